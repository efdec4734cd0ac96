//! Per-record ordering on the embedded store: one engine on sled delivers an
//! `ordered_by_record` subscription, a third of the attempts fail, and still each
//! record's changes (`Account.Create`, then updates) arrive in publish order, retries included,
//! while records go on in parallel.

use std::time::Duration;

use callout::{Engine, Event, Subscription};
use callout_testkit::{changes_in_order, Receiver, Reply};

const RECORDS: u64 = 10;
const CHANGES: u64 = 8;

#[test]
fn each_records_changes_arrive_in_publish_order_retries_included() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every third request fails: it is retried at once, and must come again before the next
    // change of its record.
    let receiver = Receiver::start(|n, _| {
        if n % 3 == 1 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    });
    let engine = Engine::builder(dir.path().join("store"))
        .allow_address("127.0.0.1")
        .workers(4)
        .open()
        .expect("the engine opens");
    let mut sub = Subscription::new(format!("{}/hook", receiver.url))
        .events(["account.*"])
        .ordered_by_record(true);
    sub.retry_schedule = Some(vec![0; 10]);
    engine.subscriptions().create(sub).expect("create");
    for change in 0..CHANGES {
        for record in 0..RECORDS {
            let id = record.to_string();
            let event = if change == 0 {
                Event::created("Account", id)
            } else {
                Event::updated("Account", id)
            };
            let receipt = engine
                .publish(event.event_id(format!("{record}-{change}")))
                .expect("publish");
            assert_eq!(receipt.deliveries.len(), 1);
        }
    }
    // Until as many requests succeeded as changes were published (the script's 200s are the
    // requests it numbered 0 and 2 modulo 3).
    let got = receiver.wait_until(Duration::from_secs(60), |got| {
        (0..got.len()).filter(|n| n % 3 != 1).count() as u64 >= RECORDS * CHANGES
    });
    let per_record = changes_in_order(&got);
    assert_eq!(per_record.len() as u64, RECORDS, "every record delivered");
    for (record, changes) in &per_record {
        assert_eq!(
            changes.last(),
            Some(&(CHANGES - 1)),
            "record {record}: {changes:?}"
        );
    }
    engine.shutdown(Duration::from_secs(5)).expect("shutdown");
}
