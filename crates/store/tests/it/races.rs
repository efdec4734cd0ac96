//! Races and edge cases of layout 2 and the due index: the group commit against hold and
//! resume, concurrent replays, and id blocks across a crash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use callout_store::{Counts, DeadFilter, History, LeaseLimits, Queue, SledStore, StoreConfig};

use crate::{attempt, delivery, open, spawn_self};

const CHILD_DIR: &str = "CALLOUT_RACES_IDS_CHILD_DIR";

/// A subscription held while an enqueue to it waits for its group commit (counted due, not yet
/// applied): the leader files the applied record as held, and nothing of it is leased.
#[test]
fn hold_meanwhile_an_enqueue_waits_for_its_group_commit_holds_its_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    // Background writers keep a leader flushing, so an enqueue often waits for the next group.
    let background = BusyWriters::start(&store);
    let rounds = 100u64;
    for round in 0..rounds {
        let sub = 1_000 + round;
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                store
                    .enqueue(&[], vec![delivery(sub, &format!("r{round}"), 1)], 1)
                    .unwrap();
            })
        };
        // Counted due (in the step that queued its batch for the group commit): hold now.
        let started = Instant::now();
        while store.subscription_counts(sub).unwrap().due == 0
            && started.elapsed() < Duration::from_secs(10)
        {
            std::hint::spin_loop();
        }
        store.hold_subscription(sub).unwrap();
        writer.join().unwrap();
        let counts = store.subscription_counts(sub).unwrap();
        assert_eq!((counts.due, counts.held), (0, 1), "round {round}");
    }
    background.stop();
    let held = |sub: &u64| (1_000..1_000 + rounds).contains(sub);
    let leased = store.lease(u64::MAX / 2, 1_000_000).unwrap();
    assert!(leased.iter().all(|d| !held(&d.delivery.subscription_id)));
    drop(store);
    let store = open(dir.path());
    let mut resumed = 0;
    for sub in 1_000..1_000 + rounds {
        let counts = store.subscription_counts(sub).unwrap();
        assert_eq!((counts.due, counts.held), (0, 1), "sub {sub} after reopen");
        resumed += store.resume_subscription(sub, 1).unwrap();
    }
    assert_eq!(resumed, rounds);
    let leased = store.lease(u64::MAX / 2, 1_000_000).unwrap();
    assert_eq!(
        leased
            .iter()
            .filter(|d| held(&d.delivery.subscription_id))
            .count() as u64,
        rounds
    );
}

/// In the child: ids 1-3 enqueued, one delivered and flushed, then the process dies without
/// `Drop` giving back the rest of its id block.
#[test]
fn ids_of_a_crashed_process_are_never_handed_out_again() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let store = open(std::path::Path::new(&dir));
        let batch = (0..3).map(|i| delivery(1, &format!("c{i}"), 1)).collect();
        let receipt = store.enqueue(&[], batch, 1).unwrap();
        assert_eq!(receipt.delivery_ids, [1, 2, 3]);
        let leased = store.lease(1, 1).unwrap();
        store
            .complete(leased[0].token, attempt(1, 2, "delivered"))
            .unwrap();
        store.flush().unwrap();
        println!("READY");
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_self(
        "races::ids_of_a_crashed_process_are_never_handed_out_again",
        &[(CHILD_DIR, dir.path())],
    );
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(!child.wait().unwrap().success(), "the child aborts");
    assert!(out.contains("READY"), "child output: {out}");
    let store = open(dir.path());
    let counts = store.counts().unwrap();
    assert_eq!((counts.due, counts.delivered), (2, 1));
    let next = store
        .enqueue(&[], vec![delivery(1, "after", 1)], 3)
        .unwrap()
        .delivery_ids[0];
    assert!(next > 3, "id {next} was handed out before the crash");
    assert!(store.attempts_for_delivery(next).unwrap().is_empty());
    assert_eq!(store.attempts_for_delivery(1).unwrap().len(), 1);
}

/// A subscription resumed while an enqueue to it waits for its group commit: the delivery is
/// filed by the state at apply time, so it is due, not held for a subscription that is not.
#[test]
fn resume_meanwhile_an_enqueue_waits_for_its_group_commit_leaves_it_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let background = BusyWriters::start(&store);
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0..300 {
        store.hold_subscription(1).unwrap();
        let writer = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                store
                    .enqueue(&[], vec![delivery(1, &format!("r{round}"), 1)], 1)
                    .unwrap()
                    .delivery_ids[0]
            })
        };
        // Counted as soon as it is queued for the group commit; resume then, before it lands.
        while store.subscription_counts(1).unwrap() == Counts::default()
            && Instant::now() < deadline
        {
            std::hint::spin_loop();
        }
        store.resume_subscription(1, 1).unwrap();
        let id = writer.join().unwrap();
        assert_eq!(
            store.subscription_counts(1).unwrap().held,
            0,
            "round {round}: delivery {id} held for a resumed subscription"
        );
        let only_one = LeaseLimits::new(0).subscription(1, usize::MAX);
        let leased = store.lease_within(1, 1_000, &only_one).unwrap();
        assert_eq!(leased.len(), 1, "round {round}");
        store
            .complete(leased[0].token, attempt(1, 1, "delivered"))
            .unwrap();
    }
    background.stop();
}

/// Two replays of the same dead letters at once bring each back once.
#[test]
fn concurrent_replays_bring_each_dead_letter_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let n = 2_000u64;
    let batch = (0..n).map(|i| delivery(1, &format!("e{i}"), 1)).collect();
    store.enqueue(&[], batch, 1).unwrap();
    for d in store.lease(1, n as usize).unwrap() {
        store.dead_letter(d.token, attempt(1, 2, "failed")).unwrap();
    }
    let replays: Vec<_> = [10u64, 20]
        .into_iter()
        .map(|now| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                store
                    .replay_dead(&DeadFilter::subscription(1), now)
                    .unwrap()
            })
        })
        .collect();
    let replayed: usize = replays.into_iter().map(|t| t.join().unwrap()).sum();
    let counts = store.counts().unwrap();
    let leased = store.lease(100, 10 * n as usize).unwrap();
    assert_eq!(
        (
            replayed as u64,
            counts.due,
            counts.dead,
            leased.len() as u64
        ),
        (n, n, 0, n)
    );
}

/// Three writers enqueueing to other subscriptions until stopped, so a group-commit leader is
/// nearly always busy and an enqueue often waits for the next group.
struct BusyWriters {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyWriters {
    fn start(store: &Arc<callout_store::SledStore>) -> BusyWriters {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..3)
            .map(|t| {
                let (store, stop) = (Arc::clone(store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        store
                            .enqueue(&[], vec![delivery(100 + t, &format!("b{t}-{i}"), 1)], 1)
                            .unwrap();
                    }
                })
            })
            .collect();
        BusyWriters { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Four workers lease, fail and lease again the same deliveries as fast as they can, while the
/// write-behind buffer holds their settles: with fewer deliveries than fill it, every lease
/// after the first round finds its delivery's reschedule still buffered; with more, the buffer
/// fills and is applied in the middle of the race. Each delivery goes through its failures and
/// its success once each, the counts agree, and a reopen finds every outcome on disk.
#[test]
fn racing_workers_settle_each_delivery_once_per_attempt_and_all_of_it_reaches_disk() {
    // The buffer holds 256 settles: below it, above it, and handed off about 30 times while
    // other workers lease what the handed-off buffer reschedules.
    for n in [100u64, 300, 2000] {
        race_leases_and_settles(n);
    }
}

fn race_leases_and_settles(n: u64) {
    const TRIES: u32 = 4;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(open(dir.path()));
        let batch = (0..n)
            .map(|i| delivery(1 + i % 3, &format!("e{i}"), 1))
            .collect();
        let ids = store.enqueue(&[], batch, 1).unwrap().delivery_ids;
        let deadline = Instant::now() + Duration::from_secs(20);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    while Instant::now() < deadline {
                        let leased = store.lease(10, 8).unwrap();
                        if leased.is_empty() {
                            let counts = store.counts().unwrap();
                            if counts.due + counts.in_flight == 0 {
                                break;
                            }
                        }
                        for d in leased {
                            let number = d.delivery.attempts + 1;
                            let at = 10 + u64::from(number);
                            if number < TRIES {
                                store
                                    .reschedule(d.token, 10, attempt(number, at, "failed"))
                                    .unwrap();
                            } else {
                                store
                                    .complete(d.token, attempt(number, at, "delivered"))
                                    .unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let counts = store.counts().unwrap();
        assert_eq!((counts.delivered, counts.due, counts.in_flight), (n, 0, 0));
        for id in ids {
            let attempts = store.attempts_for_delivery(id).unwrap();
            assert_eq!(attempts.len(), TRIES as usize, "attempts of delivery {id}");
        }
    }
    let store = open(dir.path());
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.delivered, counts.due, counts.in_flight, counts.dead),
        (n, 0, 0, 0)
    );
    assert!(store.lease(1_000, 10).unwrap().is_empty());
}

/// An event id whose memory has expired is published again while `prune` runs: the group commit
/// remembers it anew outside the book lock, and `prune`, which read the old memory first, must
/// not remove the new one, or the next publish of the id within retention goes out twice. The
/// publish and the prune start together, at staggered offsets, over many trials.
#[test]
fn prune_racing_a_group_commit_keeps_the_event_id_it_remembers_anew() {
    let trials = 24u64;
    let mut twice = 0;
    for trial in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            dedup_retention: Duration::from_millis(1_000),
            ..StoreConfig::default()
        };
        let store = Arc::new(SledStore::open(dir.path(), config).unwrap());
        // At 0: "e" first in one expiry record, with fillers so prune takes a while over it.
        let ids: Vec<String> = std::iter::once("e".to_string())
            .chain((0..2_000).map(|i| format!("f{i:05}")))
            .collect();
        store.enqueue(&ids, vec![], 0).unwrap();
        let start = Arc::new(Barrier::new(2));
        let publisher = {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            // At 1,500 the memory of 0 has expired: "e" is new again and remembered anew.
            std::thread::spawn(move || {
                start.wait();
                store.enqueue(&["e".into()], vec![delivery(1, "e", 0)], 1_500)
            })
        };
        start.wait();
        let offset = Instant::now();
        while offset.elapsed() < Duration::from_micros((trial % 12) * 15) {
            std::hint::spin_loop();
        }
        store.prune(2_000, 10).unwrap();
        assert_eq!(publisher.join().unwrap().unwrap().delivery_ids.len(), 1);
        // At 1,600, within the retention of the publish at 1,500: a duplicate.
        let again = store
            .enqueue(&["e".into()], vec![delivery(1, "e", 0)], 1_600)
            .unwrap();
        twice += u64::from(!again.delivery_ids.is_empty());
    }
    assert_eq!(twice, 0, "trials of {trials} that enqueued \"e\" twice");
}
