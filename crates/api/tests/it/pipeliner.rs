//! Pipeliner's dialect: the seed's options example (comments included), the success envelope,
//! cursor paging, PATCH, DELETE, errors, and a delivery in Pipeliner's format.

use callout_testkit::Receiver;
use serde_json::{json, Value};

use crate::{Harness, A, WAIT};

const BASE: &str = "/pipeliner/api/v100/rest/spaces/12345/entities/Webhooks";

/// A webhook with the options example of `seeds/pipeliner-webhooks.txt` verbatim, comments
/// and all, and the seed's signature example (`tests/seeds/pipeliner-webhook.json`), to `url`.
pub(crate) fn seed_webhook(url: &str) -> String {
    include_str!("../seeds/pipeliner-webhook.json").replace("https://example.com/pipeliner", url)
}

#[test]
fn the_seed_example_is_created_read_listed_patched_and_deleted() {
    let h = Harness::new();
    let created = h.call(
        "POST",
        BASE,
        A,
        &seed_webhook("https://example.com/pipeliner"),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    assert_eq!(created["success"], true);
    let webhook = &created["data"];
    let id = webhook["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID");
    assert_eq!(webhook["url"], "https://example.com/pipeliner");
    assert_eq!(webhook["events"], json!(["Contact.*", "Account.*"]));
    assert_eq!(webhook["options"]["chunk_delay"], 300);
    assert_eq!(
        webhook["options"]["skip_keys"],
        json!(["gmail_sync", "custom_integration"])
    );
    assert!(webhook.get("signature").is_none(), "never echoed");

    let got = h.call("GET", &format!("{BASE}/{id}"), A, "").json();
    assert_eq!(got["data"]["id"], id.as_str());
    let patched = h.call(
        "PATCH",
        &format!("{BASE}/{id}"),
        A,
        r#"{"insecure_ssl": true, "events": ["Account.Update"]}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["data"]["insecure_ssl"], true);
    assert_eq!(patched.json()["data"]["events"], json!(["Account.Update"]));
    assert_eq!(
        patched.json()["data"]["options"]["chunk_delay"],
        300,
        "the rest is kept"
    );

    for n in 0..3 {
        let body = json!({"url": format!("https://example.com/{n}"), "events": ["Lead.*"]});
        assert_eq!(h.call("POST", BASE, A, &body.to_string()).status, 200);
    }
    let page = h.call("GET", &format!("{BASE}?first=3"), A, "").json();
    assert_eq!(page["total"], 4);
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(page["page_info"]["has_next_page"], true);
    assert_eq!(page["page_info"]["has_previous_page"], false);
    let cursor = page["page_info"]["end_cursor"].as_str().unwrap();
    let next = h
        .call("GET", &format!("{BASE}?first=3&after={cursor}"), A, "")
        .json();
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert_eq!(next["page_info"]["has_next_page"], false);
    assert_eq!(next["page_info"]["has_previous_page"], true);

    let deleted = h.call("DELETE", &format!("{BASE}/{id}"), A, "");
    assert_eq!(deleted.json(), json!({"success": true}));
    let gone = h.call("GET", &format!("{BASE}/{id}"), A, "");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["success"], false);
}

#[test]
fn bad_webhooks_get_pipeliner_errors_naming_the_field() {
    let h = Harness::new();
    for (body, field) in [
        (
            r#"{"url": "https://x.example/", "events": ["Account.*"], "signature": "not-a-uuid"}"#,
            "signature",
        ),
        (
            r#"{"url": "https://x.example/", "events": ["Account.*"], "options": {"chunk_size": 500}}"#,
            "options.chunk_size",
        ),
        (
            r#"{"url": "https://x.example/", "events": ["Account.*"], "colour": 1}"#,
            "colour",
        ),
        (r#"{"events": ["Account.*"]}"#, "url"),
    ] {
        let answer = h.call("POST", BASE, A, body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let error = answer.json();
        assert_eq!(error["success"], false);
        assert_eq!(error["field"], field, "{body}: {error}");
        assert_eq!(error["errorname"], "ERROR_INVALID_FIELD_VALUE");
    }
    let malformed = h.call("POST", BASE, A, "{nope");
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["field"], Value::Null);
    assert_eq!(h.call("GET", &format!("{BASE}?first=0"), A, "").status, 400);
    assert_eq!(
        h.call("GET", &format!("{BASE}?after=garbage"), A, "")
            .status,
        400
    );
    assert_eq!(h.call("PUT", BASE, A, "{}").status, 405);
    assert_eq!(
        h.call("GET", &format!("{BASE}/no-such-id"), A, "").status,
        404
    );
}

#[test]
fn a_webhook_registered_through_pipeliner_gets_signed_pipeliner_chunks() {
    let h = Harness::new();
    let receiver = Receiver::ok();
    let body = json!({"url": format!("{}/pl", receiver.url), "events": ["Account.*"], "signature": "01234567-abcd-dcba-ffff-000000000000"});
    let created = h.call("POST", BASE, A, &body.to_string()).json();
    h.call(
        "POST",
        "/v1/events",
        A,
        r#"{"entity": "Account", "action": "Update", "id": "a1", "data": {"name": "Acme"}}"#,
    );
    let got = receiver.wait_for("/pl", 1, WAIT);
    assert_eq!(got.len(), 1);
    let chunk = got[0].json();
    assert_eq!(chunk[0]["event"], "Account.Update");
    assert_eq!(chunk[0]["webhook"]["id"], created["data"]["id"]);
    assert_eq!(chunk[0]["entity"]["name"], "Acme");
    assert!(got[0].header("WebHook-Signature").is_some());
}
