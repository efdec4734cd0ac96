//! callout's REST API: each endpoint's success and error paths.

use callout_testkit::{Receiver, Reply};
use serde_json::{json, Value};

use crate::{eventually, Harness, A, WAIT};

fn create(h: &Harness, url: &str) -> Value {
    let body = json!({"target_url": url, "events": ["contact.*"], "name": "crm"}).to_string();
    let answer = h.call("POST", "/v1/subscriptions", A, &body);
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()
}

#[test]
fn subscriptions_are_created_read_replaced_patched_listed_and_deleted() {
    let h = Harness::new();
    let created = create(&h, "https://receiver.example/hooks");
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["tenant"], "tenant-a");
    assert_eq!(created["created_by"], "alice");
    assert_eq!(created["state"], "active");

    let got = h.call("GET", &format!("/v1/subscriptions/{id}"), A, "");
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["name"], "crm");

    // A document read back can be sent again as it is.
    let mut replaced = got.json();
    replaced["name"] = json!("crm2");
    let put = h.call(
        "PUT",
        &format!("/v1/subscriptions/{id}"),
        A,
        &replaced.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["name"], "crm2");
    assert_eq!(put.json()["created_at"], created["created_at"]);

    let patched = h.call(
        "PATCH",
        &format!("/v1/subscriptions/{id}"),
        A,
        r#"{"state": "stopped", "skip_keys": ["sync"], "deactivation_url": null}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["state"], "stopped");
    assert_eq!(patched.json()["skip_keys"], json!(["sync"]));
    assert_eq!(patched.json()["name"], "crm2");

    create(&h, "https://other.example/hooks");
    let all = h.call("GET", "/v1/subscriptions", A, "").json();
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    assert_eq!(all["next_after"], Value::Null);
    let stopped = h
        .call("GET", "/v1/subscriptions?state=stopped", A, "")
        .json();
    assert_eq!(stopped["data"].as_array().unwrap().len(), 1);
    let page = h.call("GET", "/v1/subscriptions?limit=1", A, "").json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_after"], id);
    let next = h
        .call(
            "GET",
            &format!("/v1/subscriptions?limit=1&after={id}"),
            A,
            "",
        )
        .json();
    assert_eq!(next["data"][0]["target_url"], "https://other.example/hooks");
    let by_name = h.call("GET", "/v1/subscriptions?name=CRM2", A, "").json();
    assert_eq!(by_name["data"].as_array().unwrap().len(), 1);
    let by_event = h
        .call("GET", "/v1/subscriptions?event=contact.updated", A, "")
        .json();
    assert_eq!(by_event["data"].as_array().unwrap().len(), 2);

    let deleted = h.call("DELETE", &format!("/v1/subscriptions/{id}"), A, "");
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    let gone = h.call("GET", &format!("/v1/subscriptions/{id}"), A, "");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["code"], "not_found");
    assert_eq!(
        h.call("DELETE", &format!("/v1/subscriptions/{id}"), A, "")
            .status,
        404
    );
}

#[test]
fn bad_subscriptions_are_refused_naming_the_field() {
    let h = Harness::new();
    let refused = |body: &str| {
        let answer = h.call("POST", "/v1/subscriptions", A, body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        answer.json()["error"].clone()
    };
    let typo = refused(r#"{"target_url": "https://r.example/", "events": ["a.b"], "secret": "x"}"#);
    assert_eq!(typo["field"], "secret");
    assert!(typo["message"]
        .as_str()
        .unwrap()
        .contains("did you mean \"secrets\""));
    assert_eq!(
        refused(r#"{"target_url": "ftp://r.example/", "events": ["a.b"]}"#)["field"],
        "target_url"
    );
    assert_eq!(
        refused(r#"{"target_url": "https://r.example/", "events": []}"#)["field"],
        "events"
    );
    assert_eq!(
        refused(r#"{"target_url": "https://r.example/", "events": ["a.b"], "chunk_size": 500}"#)
            ["field"],
        "chunk_size"
    );
    assert_eq!(
        refused(
            r#"{"target_url": "https://r.example/", "events": ["a.b"], "entities": {"Contact": {"filtrs": []}}}"#
        )["field"],
        "entities.Contact.filtrs"
    );
    assert_eq!(refused("[1, 2]")["code"], "malformed");
    assert_eq!(refused("{not json")["code"], "malformed");
    assert_eq!(refused("")["code"], "malformed");
    assert_eq!(
        refused(r#"{"target_url": "https://r.example/", "events": "a.b"}"#)["code"],
        "malformed"
    );
    // A subscription that was never stored is not half-stored either.
    let list = h.call("GET", "/v1/subscriptions", A, "").json();
    assert_eq!(list["data"], json!([]));

    let created = create(&h, "https://receiver.example/");
    let id = created["id"].as_u64().unwrap();
    let patch = h.call(
        "PATCH",
        &format!("/v1/subscriptions/{id}"),
        A,
        r#"{"events": []}"#,
    );
    assert_eq!(patch.status, 400);
    assert_eq!(patch.json()["error"]["field"], "events");
    let unchanged = h
        .call("GET", &format!("/v1/subscriptions/{id}"), A, "")
        .json();
    assert_eq!(unchanged["events"], json!(["contact.*"]));
    for (method, path) in [
        ("GET", "/v1/subscriptions/abc"),
        ("GET", "/v1/subscriptions?limit=0"),
        ("GET", "/v1/subscriptions?state=paused"),
        ("GET", "/v1/subscriptions?colour=red"),
        ("GET", "/v1/dead-letters?from=yesterday"),
        ("POST", "/v1/subscriptions?test=maybe"),
    ] {
        let answer = h.call(method, path, A, "{}");
        assert_eq!(answer.status, 400, "{method} {path}: {}", answer.text());
    }
    assert_eq!(h.call("PATCH", "/v1/subscriptions", A, "{}").status, 405);
    assert_eq!(h.call("GET", "/v1/nothing", A, "").status, 404);
    assert_eq!(h.call("GET", "/nothing", A, "").status, 404);
}

#[test]
fn a_test_send_reaches_the_target_and_a_refusal_is_502() {
    let h = Harness::new();
    let receiver = Receiver::start(|_, r| Reply::status(if r.path == "/ok" { 200 } else { 500 }));
    let ok = create(&h, &format!("{}/ok", receiver.url));
    let failing = create(&h, &format!("{}/fail", receiver.url));
    let answer = h.call(
        "POST",
        &format!("/v1/subscriptions/{}/test", ok["id"]),
        A,
        "",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["status"], 200);
    let got = receiver.wait_for("/ok", 1, WAIT);
    assert_eq!(got[0].json()["type"], "test");
    let answer = h.call(
        "POST",
        &format!("/v1/subscriptions/{}/test", failing["id"]),
        A,
        "",
    );
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"]["code"], "test_failed");
    // Creating with ?test=true stores only when the target answers 200.
    let body = json!({"target_url": format!("{}/fail", receiver.url), "events": ["a.b"]});
    let refused = h.call("POST", "/v1/subscriptions?test=true", A, &body.to_string());
    assert_eq!(refused.status, 502);
    let body = json!({"target_url": format!("{}/ok", receiver.url), "events": ["a.b"]});
    let created = h.call("POST", "/v1/subscriptions?test=true", A, &body.to_string());
    assert_eq!(created.status, 201);
    assert_eq!(
        h.call("GET", "/v1/subscriptions", A, "").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn publish_delivers_and_an_idempotency_key_makes_a_repeat_a_duplicate() {
    let h = Harness::new();
    let receiver = Receiver::ok();
    let sub = create(&h, &format!("{}/hook", receiver.url));
    let event =
        r#"{"entity": "Contact", "action": "created", "id": "42", "data": {"name": "Ada"}}"#;
    let first = h.send(
        "POST",
        "/v1/events",
        A,
        &[("idempotency-key", "order-1")],
        event,
    );
    assert_eq!(first.status, 202, "{}", first.text());
    let receipt = first.json();
    assert_eq!(receipt["event_ids"], json!(["order-1"]));
    assert_eq!(receipt["deliveries"].as_array().unwrap().len(), 1);
    let again = h
        .send(
            "POST",
            "/v1/events",
            A,
            &[("idempotency-key", "order-1")],
            event,
        )
        .json();
    assert_eq!(again["deliveries"], json!([]));
    assert_eq!(again["duplicates"], json!(["order-1"]));

    let got = receiver.wait_for("/hook", 1, WAIT);
    assert_eq!(got[0].json()["data"]["fields"]["name"], "Ada");
    let delivery = receipt["deliveries"][0].as_u64().unwrap();
    assert!(eventually(WAIT, || {
        h.call("GET", &format!("/v1/deliveries/{delivery}/attempts"), A, "")
            .json()
            .as_array()
            .is_some_and(|a| a.len() == 1)
    }));
    let attempts = h
        .call("GET", &format!("/v1/deliveries/{delivery}/attempts"), A, "")
        .json();
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["delivery_id"], delivery);
    // A delivered delivery is not kept (its attempts are); a queued one is shown.
    let delivered = h.call("GET", &format!("/v1/deliveries/{delivery}"), A, "");
    assert_eq!(delivered.status, 404);
    let failing = Receiver::start(|_, _| Reply::status(500));
    let body = json!({"target_url": format!("{}/fail", failing.url), "events": ["lead.*"]});
    assert_eq!(
        h.call("POST", "/v1/subscriptions", A, &body.to_string())
            .status,
        201
    );
    let lead = r#"{"entity": "Lead", "action": "created", "id": "7", "data": {"name": "Bo"}}"#;
    let queued = h.call("POST", "/v1/events", A, lead).json()["deliveries"][0].clone();
    failing.wait_for("/fail", 1, WAIT);
    assert!(eventually(WAIT, || {
        h.call("GET", &format!("/v1/deliveries/{queued}"), A, "")
            .json()["attempts"]
            == 1
    }));
    let shown = h
        .call("GET", &format!("/v1/deliveries/{queued}"), A, "")
        .json();
    assert_eq!(shown["event_type"], "lead.created");
    assert_eq!(shown["state"], "due", "waiting for its retry");
    assert_eq!(shown["body"]["data"]["fields"]["name"], "Bo");
    let by_sub = h
        .call(
            "GET",
            &format!("/v1/subscriptions/{}/attempts", sub["id"]),
            A,
            "",
        )
        .json();
    assert_eq!(by_sub[0]["delivery_id"], delivery);
    assert!(eventually(WAIT, || {
        h.call("GET", "/v1/stats", A, "").json()["delivered"] == 1
    }));
    let stats = h
        .call(
            "GET",
            &format!("/v1/subscriptions/{}/stats", sub["id"]),
            A,
            "",
        )
        .json();
    assert_eq!(stats["delivered"], 1);

    // A batch: all or nothing, the key numbered per event.
    let batch = format!("[{event}, {event}]");
    let receipt = h
        .send(
            "POST",
            "/v1/events",
            A,
            &[("idempotency-key", "b")],
            batch.clone(),
        )
        .json();
    assert_eq!(receipt["event_ids"], json!(["b:0", "b:1"]));
    let bad = format!(
        r#"[{event}, {{"entity": "Contact", "action": "created", "id": "1", "actr": "7"}}]"#
    );
    let refused = h.call("POST", "/v1/events", A, &bad);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["field"], "[1].actr");
    let conflicting = h.send(
        "POST",
        "/v1/events",
        A,
        &[("idempotency-key", "k")],
        r#"{"entity": "Contact", "action": "created", "id": "1", "event_id": "other"}"#,
    );
    assert_eq!(conflicting.status, 400);
    assert_eq!(conflicting.json()["error"]["field"], "event_id");
    assert_eq!(h.call("POST", "/v1/events", A, "[]").status, 400);
    let not_a_record = h.call(
        "POST",
        "/v1/events",
        A,
        r#"{"entity": "Contact", "action": "created", "id": "1", "data": [1, 2]}"#,
    );
    assert_eq!(not_a_record.status, 400);
    assert_eq!(not_a_record.json()["error"]["field"], "data");
    let other_tenant = h.call(
        "POST",
        "/v1/events",
        A,
        r#"{"entity": "Contact", "action": "created", "id": "1", "tenant": "tenant-b"}"#,
    );
    assert_eq!(other_tenant.status, 400);
    assert_eq!(other_tenant.json()["error"]["field"], "tenant");
    let unnamed = h.call(
        "POST",
        "/v1/events",
        A,
        r#"{"entity": "", "action": "created", "id": "1"}"#,
    );
    assert_eq!(unnamed.status, 400);
    assert_eq!(unnamed.json()["error"]["field"], "entity");
    assert_eq!(h.call("GET", "/v1/deliveries/999999", A, "").status, 404);
    assert_eq!(
        h.call("GET", "/v1/deliveries/999999/attempts", A, "")
            .status,
        404
    );
}

#[test]
fn dead_letters_are_listed_replayed_and_purged_by_subscription_and_time() {
    let h = Harness::new();
    // 410 Gone dead-letters the delivery at once (and stops the subscription).
    let receiver = Receiver::start(|_, _| Reply::status(410));
    let sub = create(&h, &format!("{}/gone", receiver.url));
    let id = sub["id"].as_u64().unwrap();
    let event = r#"{"entity": "Contact", "action": "created", "id": "1"}"#;
    assert_eq!(h.call("POST", "/v1/events", A, event).status, 202);
    assert!(eventually(WAIT, || {
        h.call("GET", "/v1/dead-letters", A, "")
            .json()
            .as_array()
            .map(Vec::len)
            == Some(1)
    }));
    let dead = h.call("GET", "/v1/dead-letters", A, "").json();
    assert_eq!(dead[0]["state"], "dead");
    assert!(dead[0]["dead_at"].is_u64());
    let by_sub = h
        .call("GET", &format!("/v1/dead-letters?subscription={id}"), A, "")
        .json();
    assert_eq!(by_sub.as_array().unwrap().len(), 1);
    let before = h
        .call("GET", "/v1/dead-letters?to=2000-01-01T00:00:00Z", A, "")
        .json();
    assert_eq!(before, json!([]));
    assert_eq!(
        h.call("GET", "/v1/dead-letters?subscription=99999", A, "")
            .status,
        404
    );

    let replayed = h.call(
        "POST",
        &format!("/v1/dead-letters/replay?subscription={id}"),
        A,
        "",
    );
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.json()["count"], 1);
    // Replayed into a stopped subscription: held, not dead.
    assert_eq!(h.call("GET", "/v1/dead-letters", A, "").json(), json!([]));
    assert!(eventually(WAIT, || {
        h.call("GET", "/v1/stats", A, "").json()["held"] == 1
    }));
    h.call(
        "PATCH",
        &format!("/v1/subscriptions/{id}"),
        A,
        r#"{"state": "active"}"#,
    );
    assert!(eventually(WAIT, || {
        h.call("GET", "/v1/dead-letters", A, "")
            .json()
            .as_array()
            .map(Vec::len)
            == Some(1)
    }));
    let purged = h.call(
        "DELETE",
        "/v1/dead-letters?from=2000-01-01T00:00:00Z",
        A,
        "",
    );
    assert_eq!(purged.status, 200);
    assert_eq!(purged.json()["count"], 1);
    assert_eq!(h.call("GET", "/v1/dead-letters", A, "").json(), json!([]));
    assert_eq!(h.call("PUT", "/v1/dead-letters", A, "").status, 405);
}

#[test]
fn the_openapi_document_is_served_without_credentials() {
    let h = Harness::new();
    let answer = h.call("GET", "/v1/openapi.json", "", "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["openapi"], "3.1.0");
    assert_eq!(h.call("POST", "/v1/openapi.json", "", "").status, 405);
}
