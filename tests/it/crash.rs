//! Durability of the whole engine: a child process publishes in a loop while deliveries are in
//! flight and is killed with SIGKILL; the parent reopens the store and every event the child saw
//! acknowledged is delivered at least once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};

use callout_testkit::{Receiver, Reply};

const CHILD_DIR: &str = "CALLOUT_CRASH_CHILD_DIR";
const CHILD_URL: &str = "CALLOUT_CRASH_CHILD_URL";

/// The child's side: publish until killed, printing each acknowledged event id.
fn child(dir: &str, url: &str) -> ! {
    let engine = Engine::builder(dir)
        .allow_address("127.0.0.1")
        .open()
        .expect("child opens the store");
    if engine.subscriptions().get(1).expect("read").is_none() {
        engine
            .subscriptions()
            .create(Subscription::new(format!("{url}/hook")).events(["*"]))
            .expect("create");
    }
    for i in 0..1_000_000u64 {
        let id = format!("evt-{i}");
        engine
            .publish(Event::created("Ticket", i.to_string()).event_id(id.clone()))
            .expect("publish");
        println!("ACK {id}");
    }
    std::process::exit(0)
}

#[test]
fn sigkill_mid_delivery_loses_no_acknowledged_event() {
    if let (Ok(dir), Ok(url)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_URL)) {
        child(&dir, &url);
    }
    // A slow receiver, so that deliveries are in flight when the child dies.
    let receiver = Receiver::start(|_, _| Reply {
        delay: Duration::from_millis(20),
        ..Reply::status(200)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut acknowledged = HashSet::new();
    for trial in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::sigkill_mid_delivery_loses_no_acknowledged_event",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &store)
            .env(CHILD_URL, &receiver.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_string))
                .collect::<Vec<_>>()
        });
        // Let it publish and deliver for a while, then kill it without warning.
        receiver.wait_for("/hook", 5 * (trial as usize + 1), Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50 + 70 * trial));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        acknowledged.extend(reader.join().unwrap());
    }
    assert!(!acknowledged.is_empty(), "the child acknowledged events");
    // Reopen: the store opens cleanly and delivers everything that was pending.
    let engine = Engine::builder(&store)
        .allow_address("127.0.0.1")
        .open()
        .unwrap();
    let delivered = |receiver: &Receiver| -> HashSet<String> {
        receiver
            .on("/hook")
            .iter()
            .filter_map(|r| r.json()["data"]["event_id"].as_str().map(str::to_string))
            .collect()
    };
    let started = Instant::now();
    while !acknowledged.is_subset(&delivered(&receiver))
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = delivered(&receiver);
    let missing: Vec<_> = acknowledged.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never delivered, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    drop(engine);
}
