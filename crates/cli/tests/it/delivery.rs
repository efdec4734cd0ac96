//! create -> publish -> run round trips, what stats and attempts say afterwards, dead letters,
//! and a run that is interrupted.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use callout::deliver::sign::standard;
use serde_json::json;

use crate::{finish, subscription, Ran, Store, CONTACT_CREATED, SECRET};
use callout_testkit::{Receiver, Reply};

/// `run --until-empty` with the receiver allowed and a bound, so a bug cannot hang the suite.
const RUN: &[&str] = &[
    "run",
    "--until-empty",
    "--allow",
    "127.0.0.1",
    "--timeout",
    "30s",
];

#[test]
fn created_subscription_receives_a_published_event_signed() {
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let store = Store::new();
    let url = format!("{}/hooks", receiver.url);
    let created = store.json(&["subscriptions", "create", &subscription(&url, json!({}))]);
    let id = created["id"].as_u64().expect("an id");
    let receipt = store.json(&["publish", CONTACT_CREATED]);
    assert_eq!(receipt["deliveries"].as_array().map(Vec::len), Some(1));

    let ran = store.ok(RUN);
    assert!(ran.contains("stopped (empty)"), "{ran}");
    assert!(ran.contains("delivered 1"), "{ran}");

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hooks");
    assert_eq!(got[0].json()["type"], "contact.created");
    let headers: Vec<(&str, &str)> = got[0]
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let timestamp: u64 = got[0].header("webhook-timestamp").unwrap().parse().unwrap();
    let secret = standard::Secret::parse(SECRET).unwrap();
    standard::verify(&secret, &headers, &got[0].body, timestamp).expect("signed");

    let stats = store.json(&["stats"]);
    assert_eq!(
        stats["total"],
        json!({"due": 0, "retrying": 0, "in_flight": 0, "held": 0, "delivered": 1, "dead": 0})
    );
    assert_eq!(stats["subscriptions"][0]["id"], id);

    let attempts = store.json(&["attempts", "--subscription", &id.to_string()]);
    assert_eq!(attempts.as_array().map(Vec::len), Some(1));
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["outcome"], "delivered");
    let delivery = receipt["deliveries"][0].to_string();
    let table = store.ok(&["attempts", "--delivery", &delivery]);
    assert!(
        table.starts_with(&format!("delivery {delivery}: no longer queued")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("200") && l.contains("delivered")),
        "{table}"
    );
}

#[test]
fn a_dead_letter_is_listed_purged_only_with_yes_and_replayed() {
    // The first request fails; the replayed one succeeds.
    let receiver = Receiver::start(|n, _| Reply::status(if n == 0 { 500 } else { 200 }));
    // No retries: the first failure dead-letters the delivery.
    let store = one_event_for(&receiver, json!([]));
    let ran = store.ok(RUN);
    assert!(ran.contains("dead 1"), "{ran}");
    let table = store.ok(&["attempts", "--delivery", "1"]);
    assert!(
        table.starts_with("delivery 1 to subscription 1: contact.created (")
            && table.contains("1 attempt, dead since"),
        "{table}"
    );

    let dead = store.json(&["dead", "list", "--subscription", "1", "--from", "1h"]);
    assert_eq!(dead.as_array().map(Vec::len), Some(1), "{dead}");
    assert_eq!(dead[0]["state"], "dead");
    assert_eq!(dead[0]["event_type"], "contact.created");
    let earlier = store.json(&["dead", "list", "--to", "2000-01-01"]);
    assert_eq!(earlier, json!([]), "a time range before it selects nothing");
    let table = store.ok(&["dead", "list"]);
    assert!(table.contains("500"), "the last outcome is shown: {table}");

    let refused = store.fails(&["dead", "purge"], 2);
    assert!(refused.contains("would delete 1 dead letter"), "{refused}");

    assert_eq!(
        store.json(&["dead", "replay", "--subscription", "1"]),
        json!({"replayed": 1})
    );
    assert_eq!(store.json(&["stats"])["total"]["due"], 1);
    let ran = store.ok(RUN);
    assert!(ran.contains("delivered 1"), "{ran}");
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(store.json(&["dead", "list"]), json!([]));

    let attempts = store.json(&["attempts", "--delivery", "1"]);
    let statuses: Vec<_> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(200)]);
}

#[test]
fn purge_with_yes_deletes_dead_letters() {
    let receiver = Receiver::start(|_, _| Reply::status(500));
    let store = one_event_for(&receiver, json!([]));
    store.ok(RUN);
    assert_eq!(store.json(&["stats"])["total"]["dead"], 1);
    assert_eq!(
        store.json(&["dead", "purge", "--yes"]),
        json!({"purged": 1})
    );
    assert_eq!(store.json(&["stats"])["total"]["dead"], 0);
}

#[test]
fn until_empty_stops_when_only_a_distant_retry_is_left() {
    let receiver = Receiver::start(|_, _| Reply::status(503));
    let store = one_event_for(&receiver, json!([3600]));
    let mut args = RUN.to_vec();
    args.extend(["--idle", "1s"]);
    let ran = store.ok(&args);
    assert!(ran.contains("stopped (waiting)"), "{ran}");
    assert!(ran.contains("retrying 1, waiting 0"), "{ran}");
    assert!(
        ran.contains("1 delivery waits for a later retry; a later run sends it when due"),
        "{ran}"
    );
    assert_eq!(receiver.received().len(), 1);
    let total = &store.json(&["stats"])["total"];
    assert_eq!(
        (total["due"].clone(), total["dead"].clone()),
        (json!(1), json!(0))
    );
}

#[test]
fn a_running_store_is_in_use_and_ctrl_c_stops_the_run_gracefully() {
    let store = Store::new();
    let (first, ran, rest) = interrupted(&store, &["run"], || {
        let in_use = store.fails(&["stats"], 4);
        assert!(in_use.contains("in use"), "{in_use}");
    });
    assert!(first.contains("delivered 0"), "{first}");
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(rest.contains("stopped (interrupted)"), "{rest}");
    assert_eq!(ran.stderr, "");
    // The lock went with it.
    store.ok(&["stats"]);
}

#[test]
fn interrupting_until_empty_before_the_queue_is_empty_exits_130() {
    let receiver = Receiver::start(|_, _| Reply::status(503));
    let store = one_event_for(&receiver, json!([3600]));
    let mut args = RUN.to_vec();
    args.extend(["--idle", "60s"]);
    let (_, ran, rest) = interrupted(&store, &args, || {
        receiver.wait(1, Duration::from_secs(30));
    });
    assert_eq!(ran.code, 130, "{ran:?}");
    assert!(rest.contains("stopped (interrupted)"), "{rest}");
    assert!(rest.contains("retrying 1"), "{rest}");
}

/// Starts `callout <args>`, waits for its first progress line, runs `while_running`, sends it
/// SIGINT, and returns the first line, how it ended and the rest of its output.
fn interrupted(
    store: &Store,
    args: &[&str],
    while_running: impl FnOnce(),
) -> (String, Ran, String) {
    let mut child = store
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start callout run");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = tx.send(first);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        let _ = tx.send(rest);
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("run started");
    while_running();
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(kill.is_ok_and(|s| s.success()), "send SIGINT");
    let ran = finish(child, Duration::from_secs(30));
    let rest = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    (first, ran, rest)
}

/// A store with one subscription to `receiver` retrying on `retry_schedule`, and one event
/// published to it.
fn one_event_for(receiver: &Receiver, retry_schedule: serde_json::Value) -> Store {
    let store = Store::new();
    let url = format!("{}/hooks", receiver.url);
    store.ok(&[
        "subscriptions",
        "create",
        &subscription(&url, json!({ "retry_schedule": retry_schedule })),
    ]);
    store.ok(&["publish", CONTACT_CREATED]);
    store
}
