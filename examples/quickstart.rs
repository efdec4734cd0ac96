//! Quickstart: an embedded engine, a local receiver that verifies signatures, a few
//! subscriptions, and events published, delivered and (some) filtered.
//!
//! Run with `cargo run --example quickstart`. It exits 0 within seconds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callout::deliver::sign::standard::{verify, Secret};
use callout::{Engine, Event, Subscription};
use serde_json::json;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = start_receiver(Arc::clone(&received))?;
    let dir = tempfile::tempdir()?;
    let engine = Engine::builder(dir.path().join("callout-data"))
        // Deliveries to internal addresses are refused unless allowed: here the receiver is local.
        .allow_address("127.0.0.1")
        .open()?;

    let subscriptions = engine.subscriptions();
    let mut names = std::collections::HashMap::new();
    let mut create = |sub: Subscription| -> Result<(), callout::Error> {
        let sub = subscriptions.create(sub)?;
        names.insert(sub.id, sub.name);
        Ok(())
    };
    create(
        Subscription::new(format!("{url}/crm"))
            .name("crm.Contact.EmailChanged")
            .events(["Contact.Update"])
            .secret(SECRET)
            .on_field_change("Contact", ["email1"]),
    )?;
    create(
        Subscription::new(format!("{url}/sync"))
            .name("mail.Sync")
            .events(["contact.*"])
            .secret(SECRET)
            .skip_keys(["gmail_sync"]),
    )?;
    create(
        Subscription::new(format!("{url}/sales"))
            .name("sales.BigDeals")
            .events(["sale.*"])
            .secret(SECRET)
            .filter("sale", "amount", "gte", json!(10_000)),
    )?;

    let events = [
        Event::updated("Contact", "42")
            .data(json!({"email1": "ada@new.example", "name": "Ada"}))
            .previous(json!({"email1": "ada@old.example", "name": "Ada"})),
        Event::updated("Contact", "42")
            .data(json!({"email1": "ada@new.example", "name": "Ada L."}))
            .previous(json!({"email1": "ada@new.example", "name": "Ada"})),
        Event::updated("Contact", "43")
            .data(json!({"email1": "bob@gmail.example"}))
            .previous(json!({"email1": "bob@old.example"}))
            .skip_key("gmail_sync"),
        Event::new("sale", "changed", "7").data(json!({"amount": 25_000})),
        Event::created("sale", "8").data(json!({"amount": 99})),
    ];
    let mut expected = 0;
    for event in events {
        println!("publish {} {}", event.name(), event.id);
        for (id, verdict) in engine.explain(&event)? {
            let name = names.get(&id).map_or("?", String::as_str);
            match verdict {
                Ok(()) => {
                    expected += 1;
                    println!("  -> {name}: will be delivered");
                }
                Err(callout::core::Miss::NoPattern) => {}
                Err(why) => println!("  -- {name}: filtered ({why})"),
            }
        }
        engine.publish(event)?;
    }

    let started = Instant::now();
    while received.lock().map(|r| r.len()).unwrap_or(0) < expected
        && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "\nreceived {} signed webhooks:",
        received.lock().map(|r| r.len()).unwrap_or(0)
    );
    for line in received.lock().map(|r| r.clone()).unwrap_or_default() {
        println!("  {line}");
    }
    println!("\nstats: {:?}", engine.stats()?);
    engine.shutdown(Duration::from_secs(2))?;
    let count = received.lock().map(|r| r.len()).unwrap_or(0);
    if count != expected {
        return Err(format!("expected {expected} deliveries, received {count}").into());
    }
    Ok(())
}

/// A receiver on 127.0.0.1 that checks each request's Standard Webhooks signature.
fn start_receiver(received: Arc<Mutex<Vec<String>>>) -> Result<String, Box<dyn std::error::Error>> {
    let server = tiny_http::Server::http("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or("no port")?;
    let secret = Secret::parse(SECRET)?;
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = Vec::new();
            let _ = request.as_reader().read_to_end(&mut body);
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|h| (h.field.to_string(), h.value.to_string()))
                .collect();
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let verified = verify(&secret, &pairs, &body, now).is_ok();
            let summary = serde_json::from_slice::<serde_json::Value>(&body)
                .map(|b| {
                    format!(
                        "{} {} fields={}",
                        b["type"], b["data"]["id"], b["data"]["fields"]
                    )
                })
                .unwrap_or_default();
            let status = if verified { 200 } else { 401 };
            if let Ok(mut all) = received.lock() {
                all.push(format!(
                    "{} {summary} signature={}",
                    request.url(),
                    if verified { "ok" } else { "BAD" }
                ));
            }
            let _ = request.respond(tiny_http::Response::empty(status));
        }
    });
    Ok(format!("http://127.0.0.1:{port}"))
}
