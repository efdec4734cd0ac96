//! A small host application embedding callout the way a real one would: an in-memory contacts
//! service that publishes an event on every change, passes the `Webhook-Skip-Key` of the
//! request that caused it, and shuts the engine down with itself.
//!
//! Run with `cargo run --example host_app`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use serde_json::{json, Value};

/// The host's own domain: contacts kept in memory.
struct Contacts {
    records: Mutex<BTreeMap<u64, Value>>,
    next_id: Mutex<u64>,
    webhooks: Engine,
}

/// What the host's API layer knows about an incoming request.
struct RequestContext<'a> {
    user: &'a str,
    /// The `Webhook-Skip-Key` header, when the caller sent one (e.g. a sync integration that
    /// does not want to hear about its own changes).
    skip_key: Option<&'a str>,
}

impl Contacts {
    fn create(&self, ctx: &RequestContext<'_>, data: Value) -> Result<u64, callout::Error> {
        let id = {
            let mut next = self.next_id.lock().map_err(|_| callout::Error::Poisoned)?;
            *next += 1;
            *next
        };
        self.records
            .lock()
            .map_err(|_| callout::Error::Poisoned)?
            .insert(id, data.clone());
        self.publish(ctx, Event::created("Contact", id.to_string()).data(data))?;
        Ok(id)
    }

    fn update(
        &self,
        ctx: &RequestContext<'_>,
        id: u64,
        changes: Value,
    ) -> Result<(), callout::Error> {
        let (before, after) = {
            let mut records = self.records.lock().map_err(|_| callout::Error::Poisoned)?;
            let record = records.entry(id).or_insert_with(|| json!({}));
            let before = record.clone();
            if let (Some(target), Some(changes)) = (record.as_object_mut(), changes.as_object()) {
                target.extend(changes.clone());
            }
            (before, record.clone())
        };
        self.publish(
            ctx,
            Event::updated("Contact", id.to_string())
                .data(after)
                .previous(before),
        )
    }

    fn delete(&self, ctx: &RequestContext<'_>, id: u64) -> Result<(), callout::Error> {
        let last = self
            .records
            .lock()
            .map_err(|_| callout::Error::Poisoned)?
            .remove(&id)
            .unwrap_or(json!({}));
        self.publish(ctx, Event::deleted("Contact", id.to_string()).data(last))
    }

    /// Every change goes through here: who made it and the skip key travel with the event.
    fn publish(&self, ctx: &RequestContext<'_>, mut event: Event) -> Result<(), callout::Error> {
        event = event.actor(ctx.user);
        if let Some(key) = ctx.skip_key {
            event = event.skip_key(key);
        }
        self.webhooks.publish(event)?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, received) = receiver()?;
    let dir = tempfile::tempdir()?;
    let webhooks = Engine::builder(dir.path().join("webhooks"))
        .allow_address("127.0.0.1")
        .open()?;
    webhooks.subscriptions().create(
        Subscription::new(format!("{url}/hooks"))
            .name("mailer.Contacts")
            .events(["contact.*"])
            .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .skip_keys(["mailer_sync"]),
    )?;
    let contacts = Contacts {
        records: Mutex::new(BTreeMap::new()),
        next_id: Mutex::new(0),
        webhooks,
    };

    let alice = RequestContext {
        user: "alice",
        skip_key: None,
    };
    let mailer = RequestContext {
        user: "mailer-bot",
        skip_key: Some("mailer_sync"),
    };
    let id = contacts.create(&alice, json!({"name": "Ada", "email1": "ada@example.com"}))?;
    contacts.update(&mailer, id, json!({"email1": "ada@mailer.example"}))?; // its own change: skipped
    contacts.update(&alice, id, json!({"name": "Ada Lovelace"}))?;
    contacts.delete(&alice, id)?;

    let started = Instant::now();
    while received.lock().map(|r| r.len()).unwrap_or(0) < 3
        && started.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = received.lock().map(|r| r.clone()).unwrap_or_default();
    println!(
        "the mailer's receiver got {} webhooks (its own change was skipped):",
        got.len()
    );
    for line in &got {
        println!("  {line}");
    }
    contacts.webhooks.shutdown(Duration::from_secs(2))?;
    if got.len() != 3 {
        return Err(format!("expected 3 webhooks, got {}", got.len()).into());
    }
    Ok(())
}

/// What the receiver saw, one line per webhook.
type Log = Arc<Mutex<Vec<String>>>;

fn receiver() -> Result<(String, Log), Box<dyn std::error::Error>> {
    let server = tiny_http::Server::http("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .ok_or("no port")?;
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = Vec::new();
            let _ = request.as_reader().read_to_end(&mut body);
            let line = serde_json::from_slice::<Value>(&body)
                .map(|b| format!("{} by {}", b["type"], b["data"]["actor"]))
                .unwrap_or_default();
            if let Ok(mut all) = sink.lock() {
                all.push(line);
            }
            let _ = request.respond(tiny_http::Response::empty(200));
        }
    });
    Ok((format!("http://127.0.0.1:{port}"), received))
}
