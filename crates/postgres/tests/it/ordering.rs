//! Per-record ordering across instances: two engines deliver one `ordered_by_record`
//! subscription from one schema, a third of the attempts fail, and still every record's
//! requests arrive in publish order, retries included, while records go on in parallel.

use std::sync::Arc;
use std::time::Duration;

use callout::{Engine, Event, Subscription};
use callout_testkit::{changes_in_order, Receiver, Reply};

use crate::support::Schema;

const RECORDS: u64 = 10;
const CHANGES: u64 = 8;

#[test]
fn each_records_changes_arrive_in_publish_order_across_two_engines_retries_included() {
    let schema = Schema::new();
    // Every third request fails: it is retried at once, and must come again before the next
    // change of its record.
    let receiver = Receiver::start(|n, _| {
        if n % 3 == 1 {
            Reply::status(500)
        } else {
            Reply::status(200)
        }
    });
    let engines: Vec<Engine> = (0..2)
        .map(|_| {
            Engine::builder(Arc::new(schema.open(Duration::from_secs(300))))
                .allow_address("127.0.0.1")
                .workers(4)
                .open()
                .expect("the engine opens")
        })
        .collect();
    let mut sub = Subscription::new(format!("{}/hook", receiver.url))
        .events(["contact.*"])
        .ordered_by_record(true);
    sub.retry_schedule = Some(vec![0; 10]);
    engines[0].subscriptions().create(sub).expect("create");
    for change in 0..CHANGES {
        for record in 0..RECORDS {
            let through = &engines[((change + record) % 2) as usize];
            let event = Event::updated("Contact", record.to_string())
                .event_id(format!("{record}-{change}"));
            // The subscription may be new to this engine for a moment (its notice on the
            // way): wait until its matcher wants the event, within a bound, then publish once
            // (a host event id is remembered even when nothing matched: publishing it again
            // would be a duplicate).
            let mut tries = 0;
            while !through
                .explain(&event)
                .expect("explain")
                .iter()
                .any(|(_, verdict)| verdict.is_ok())
            {
                tries += 1;
                assert!(tries < 500, "the subscription reached both engines");
                std::thread::sleep(Duration::from_millis(10));
            }
            let receipt = through.publish(event).expect("publish");
            assert_eq!(receipt.deliveries.len(), 1, "{receipt:?}");
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
    for engine in &engines {
        engine.shutdown(Duration::from_secs(5)).expect("shutdown");
    }
}
