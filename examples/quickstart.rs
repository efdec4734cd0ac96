//! Quickstart: three subscriptions, a few events, and what each subscription makes of them.
//!
//! Run with `cargo run --example quickstart`.

use callout::core::Miss;
use callout::{Event, Matcher, Subscription};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut email_sync = Subscription::new("https://crm-sync.example/hooks")
        .name("crm.Contact.Update")
        .events(["Contact.Update"])
        .on_field_change("Contact", ["email1"])
        .skip_keys(["gmail_sync"]);
    email_sync.id = 1;
    let mut big_deals = Subscription::new("https://sales.example/hooks")
        .name("sales.BigDeals")
        .events(["sale.*"])
        .filter("sale", "amount", "gte", json!(10_000));
    big_deals.id = 2;
    let mut audit = Subscription::new("https://audit.example/hooks")
        .name("audit.Deletes")
        .events(["*.deleted"]);
    audit.id = 3;
    let matcher = Matcher::from_subscriptions([email_sync, big_deals, audit])?;

    let events = [
        Event::updated("Contact", "42")
            .data(json!({"email1": "ada@new.example", "name": "Ada"}))
            .previous(json!({"email1": "ada@old.example", "name": "Ada"})),
        Event::updated("Contact", "42")
            .data(json!({"email1": "ada@new.example", "name": "Ada L."}))
            .previous(json!({"email1": "ada@new.example", "name": "Ada"})),
        Event::updated("Contact", "42")
            .data(json!({"email1": "ada@gmail.example"}))
            .previous(json!({"email1": "ada@new.example"}))
            .skip_key("gmail_sync"),
        Event::new("sale", "changed", "7").data(json!({"amount": 25_000})),
        Event::created("sale", "8").data(json!({"amount": 99})),
        Event::deleted("Ticket", "3"),
    ];
    for event in &events {
        println!("{} {}", event.name(), event.id);
        for (id, verdict) in matcher.explain(event) {
            let name = matcher.get(id).map_or("?", |s| s.subscription().name.as_str());
            match verdict {
                Ok(()) => println!("  -> {name}: delivered"),
                Err(Miss::NoPattern) => {}
                Err(why) => println!("  -- {name}: filtered ({why})"),
            }
        }
    }
    Ok(())
}
