//! The engine's hot path, one phase per run, for counting instructions and allocations per
//! delivery under valgrind (`scripts/hot-path.sh`; a bench needs a repeatable count, which
//! callgrind gives on a noisy machine and a timer does not).
//!
//! `hot_path receive` serves a counting receiver (an empty 200 for every request) and prints
//! its URL; `hot_path publish DIR URL N` publishes N single events to one Standard subscription
//! with delivery off; `hot_path deliver DIR N` opens the store and delivers them. Running a
//! phase with N and with 2N and taking the difference leaves out the cost of opening and
//! closing the engine.

use std::io::BufRead;
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |n: &str| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(n.parse::<u64>()?.min(1_000_000))
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["receive"] => {
            let receiver = callout_testkit::RawReceiver::counting_ok();
            println!("{}", receiver.url);
            // Serves until its parent closes stdin.
            let _ = std::io::stdin().lock().lines().count();
        }
        ["publish", dir, url, n] => {
            let engine = Engine::builder(dir).deliver(false).open()?;
            engine.subscriptions().create(
                Subscription::new(format!("{url}/hook"))
                    .events(["*"])
                    .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            )?;
            for i in 0..count(n)? {
                engine.publish(
                    Event::updated("Contact", i.to_string())
                        .data(serde_json::json!({"email1": "a@example.com", "name": "Ada"})),
                )?;
            }
            engine.shutdown(Duration::from_secs(10))?;
        }
        ["deliver", dir, n] => {
            let n = count(n)?;
            let engine = Engine::builder(dir).allow_address("127.0.0.1").open()?;
            let deadline = Instant::now() + Duration::from_secs(600);
            while engine.stats()?.delivered < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let delivered = engine.stats()?.delivered;
            engine.shutdown(Duration::from_secs(10))?;
            if delivered < n {
                return Err(format!("delivered {delivered} of {n} in 600 s").into());
            }
        }
        _ => return Err("usage: hot_path receive | publish DIR URL N | deliver DIR N".into()),
    }
    Ok(())
}
