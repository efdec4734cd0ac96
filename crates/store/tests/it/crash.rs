//! Crash test: a child process enqueues and acknowledges events from several threads until it
//! is SIGKILLed; the store must reopen cleanly holding every acknowledged event exactly once.
//! The same with one more thread compacting the store over and over, so the kill lands amid
//! copies into a new generation and switches to it.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callout_store::{History, Queue};

use crate::{delivery, open, spawn_self};

const CHILD_DIR: &str = "CALLOUT_CRASH_CHILD_DIR";
const TRIALS: &str = "CALLOUT_CRASH_TRIALS";
/// Set in a child that also compacts.
const COMPACTING: &str = "CALLOUT_CRASH_COMPACTING";

/// Publishing threads in the child, so that group commits carry several publishes each.
const WRITERS: u64 = 4;

/// In the child: enqueue forever from [`WRITERS`] threads, printing `ACK <event id>` once each
/// enqueue returned; every other round the first thread also leases the oldest due delivery and
/// completes it, printing `DONE <event id>`, so the kill also lands amid leases and buffered
/// settles. With `compacting`, one more thread compacts the store every 20 ms, printing
/// `COMPACTED <records>` after each.
fn child(dir: &Path, compacting: bool) {
    let store = open(dir);
    // Bounded, so an orphaned child (its parent died first) still ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        if compacting {
            let store = &store;
            scope.spawn(move || {
                while Instant::now() < deadline {
                    let compacted = store.compact().expect("compact");
                    println!("COMPACTED {}", compacted.records);
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        for writer in 0..WRITERS {
            let store = &store;
            scope.spawn(move || {
                for n in 0u64..10_000_000 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let event = format!("evt_{writer}_{n}");
                    let receipt = store
                        .enqueue(
                            std::slice::from_ref(&event),
                            vec![delivery(n % 4 + 1, &event, 0)],
                            n,
                        )
                        .expect("enqueue");
                    assert_eq!(receipt.delivery_ids.len(), 1);
                    println!("ACK {event}");
                    if writer == 0 && n % 2 == 1 {
                        for leased in store.lease(n, 1).expect("lease") {
                            store
                                .complete(leased.token, crate::attempt(1, n, "delivered"))
                                .expect("complete");
                            println!(
                                "DONE {} {}",
                                leased.delivery.event_ids[0], leased.delivery.id
                            );
                        }
                    }
                }
            });
        }
    });
}

fn trial(number: u64, compacting: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = if compacting {
        spawn_self(
            "crash::killed_while_compacting_loses_no_acknowledged_event",
            &[(CHILD_DIR, dir.path()), (COMPACTING, Path::new("1"))],
        )
    } else {
        spawn_self(
            "crash::killed_writer_loses_no_acknowledged_event",
            &[(CHILD_DIR, dir.path())],
        )
    };
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints its "test ... " prefix on the same line as the first ACK.
            let message = if let Some((_, event)) = line.split_once("ACK ") {
                (Line::Ack, event.to_string())
            } else if let Some((_, event)) = line.split_once("DONE ") {
                (Line::Done, event.to_string())
            } else if let Some((_, records)) = line.split_once("COMPACTED ") {
                (Line::Compacted, records.to_string())
            } else {
                continue;
            };
            if tx.send(message).is_err() {
                break;
            }
        }
    });
    // Completed (and acknowledged as such): a complete is not durable when it returns, so
    // these may be gone or back in the queue (at least once), never twice. By delivery id.
    let mut acknowledged = HashSet::new();
    let mut completed = HashMap::new();
    let mut compactions = 0u64;
    let mut note = |(kind, line): (Line, String)| match kind {
        Line::Ack => {
            acknowledged.insert(line);
        }
        Line::Done => {
            let (event, id) = line.split_once(' ').expect("DONE event id");
            completed.insert(event.to_string(), id.parse::<u64>().expect("delivery id"));
        }
        Line::Compacted => compactions += 1,
    };
    // Wait for the first acknowledgement (and compaction), then let it run 100-400 ms before
    // the kill.
    let waiting = Instant::now() + Duration::from_secs(30);
    let mut seen_ack = false;
    let mut seen_compaction = !compacting;
    while !(seen_ack && seen_compaction) {
        let left = waiting.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the child acknowledges (and compacts) within 30 s");
        seen_ack |= line.0 == Line::Ack;
        seen_compaction |= line.0 == Line::Compacted;
        note(line);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let run = Duration::from_millis(100 + u64::from(nanos) % 301);
    std::thread::sleep(run);
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        note(line);
    }

    let started = Instant::now();
    let store = open(dir.path());
    assert!(store.corrupt_keys().unwrap().is_empty(), "trial {number}");
    let leased: Vec<_> = store
        .lease(u64::MAX / 2, 10_000_000)
        .unwrap()
        .into_iter()
        .map(|l| l.delivery)
        .collect();
    let mut found = HashSet::new();
    for d in &leased {
        for event in &d.event_ids {
            assert!(
                found.insert(event.clone()),
                "trial {number}: {event} stored twice"
            );
        }
        let body = String::from_utf8_lossy(&d.body);
        assert!(
            body.contains(&d.event_ids[0]),
            "trial {number}: body {body}"
        );
    }
    let lost: Vec<&String> = acknowledged
        .difference(&found)
        .filter(|event| !completed.contains_key(*event))
        .collect();
    assert!(
        lost.is_empty(),
        "trial {number}: {} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(store.counts().unwrap().in_flight as usize, leased.len());
    // A completion reached disk whole or not at all: the delivery gone with its attempt
    // recorded, or back in the queue with no attempt.
    for (event, &id) in &completed {
        let recorded = store.attempts_for_delivery(id).unwrap().len();
        let gone = !found.contains(event);
        assert_eq!(
            recorded,
            usize::from(gone),
            "trial {number}: {event} (delivery {id}) gone {gone}, {recorded} attempts"
        );
    }
    // A reopen of what the child left costs no more than a moment.
    assert!(started.elapsed() < Duration::from_secs(20));
    // An acknowledged publish's event id is remembered: publishing it again is refused.
    let mut acked: Vec<String> = acknowledged.iter().cloned().collect();
    acked.sort();
    let again = store.enqueue(&acked, Vec::new(), 1).unwrap();
    assert_eq!(
        again.duplicate_event_ids, acked,
        "trial {number}: an acknowledged event id forgotten"
    );
    eprintln!(
        "crash trial {number}: {} acknowledged, {} completed, {} stored, {compactions} \
         compactions, killed after {run:?}",
        acknowledged.len(),
        completed.len(),
        found.len()
    );
}

/// What a line of the child's says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Ack,
    Done,
    Compacted,
}

fn trials(compacting: bool) {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir), std::env::var_os(COMPACTING).is_some());
        return;
    }
    let trials = std::env::var(TRIALS)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3u64);
    for number in 0..trials {
        trial(number, compacting);
    }
}

#[test]
fn killed_writer_loses_no_acknowledged_event() {
    trials(false);
}

#[test]
fn killed_while_compacting_loses_no_acknowledged_event() {
    trials(true);
}
