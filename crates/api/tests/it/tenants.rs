//! Tenant isolation: a caller sees and changes only its own tenant's webhooks and what belongs
//! to them, in every dialect; another tenant's object is "not found" exactly like one that
//! does not exist, so ids cannot be probed.

use callout_testkit::{Receiver, Reply};
use serde_json::{json, Value};

use crate::{eventually, Harness, A, B, WAIT};

#[test]
fn tenant_b_cannot_read_change_replay_or_delete_tenant_a_s_objects() {
    let h = Harness::new();
    let receiver = Receiver::start(|_, _| Reply::status(410));
    let body = json!({"target_url": format!("{}/a", receiver.url), "events": ["contact.*"]});
    let created = h
        .call("POST", "/v1/subscriptions", A, &body.to_string())
        .json();
    let id = created["id"].as_u64().unwrap();
    h.call(
        "POST",
        "/v1/events",
        A,
        r#"{"entity": "Contact", "action": "created", "id": "1"}"#,
    );
    assert!(eventually(WAIT, || {
        h.call("GET", "/v1/dead-letters", A, "")
            .json()
            .as_array()
            .map(Vec::len)
            == Some(1)
    }));
    let delivery = h.call("GET", "/v1/dead-letters", A, "").json()[0]["id"]
        .as_u64()
        .unwrap();

    // Every by-id call of B on A's objects answers exactly what a missing id answers.
    let missing = 987_654;
    for (method, path, body) in [
        ("GET", "/v1/subscriptions/{}", ""),
        (
            "PUT",
            "/v1/subscriptions/{}",
            r#"{"target_url": "https://x.example/", "events": ["a.b"]}"#,
        ),
        ("PATCH", "/v1/subscriptions/{}", r#"{"name": "mine now"}"#),
        ("DELETE", "/v1/subscriptions/{}", ""),
        ("POST", "/v1/subscriptions/{}/test", ""),
        ("POST", "/v1/subscriptions/{}/rotate-secret", ""),
        ("GET", "/v1/subscriptions/{}/stats", ""),
        ("GET", "/v1/subscriptions/{}/attempts", ""),
        ("GET", "/v1/dead-letters?subscription={}", ""),
        ("POST", "/v1/dead-letters/replay?subscription={}", ""),
        ("DELETE", "/v1/dead-letters?subscription={}", ""),
    ] {
        let theirs = h.call(method, &path.replace("{}", &id.to_string()), B, body);
        let nobody = h.call(method, &path.replace("{}", &missing.to_string()), B, body);
        assert_eq!(theirs.status, 404, "{method} {path}: {}", theirs.text());
        assert_eq!(
            theirs.body, nobody.body,
            "{method} {path}: the answers differ"
        );
    }
    for suffix in ["", "/attempts"] {
        let theirs = h.call("GET", &format!("/v1/deliveries/{delivery}{suffix}"), B, "");
        assert_eq!(theirs.status, 404);
        let nobody = h.call("GET", &format!("/v1/deliveries/{missing}{suffix}"), B, "");
        assert_eq!(theirs.body, nobody.body);
    }
    // Listings and counts without an id show B nothing of A's.
    assert_eq!(
        h.call("GET", "/v1/subscriptions", B, "").json()["data"],
        json!([])
    );
    assert_eq!(h.call("GET", "/v1/dead-letters", B, "").json(), json!([]));
    assert_eq!(
        h.call("POST", "/v1/dead-letters/replay", B, "").json()["count"],
        0
    );
    assert_eq!(
        h.call("DELETE", "/v1/dead-letters", B, "").json()["count"],
        0
    );
    assert_eq!(h.call("GET", "/v1/stats", B, "").json()["dead"], 0);

    // A's objects are untouched.
    let mine = h
        .call("GET", &format!("/v1/subscriptions/{id}"), A, "")
        .json();
    assert_eq!(mine["target_url"], created["target_url"]);
    assert_eq!(
        h.call("GET", "/v1/dead-letters", A, "")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.call("GET", "/v1/stats", A, "").json()["dead"], 1);
}

#[test]
fn a_tenant_s_events_reach_only_its_own_subscriptions_and_its_ids_are_its_own() {
    let h = Harness::new();
    let receiver = Receiver::ok();
    for (token, path) in [(A, "/a"), (B, "/b")] {
        let body =
            json!({"target_url": format!("{}{path}", receiver.url), "events": ["contact.*"]});
        assert_eq!(
            h.call("POST", "/v1/subscriptions", token, &body.to_string())
                .status,
            201
        );
    }
    let event = r#"{"entity": "Contact", "action": "created", "id": "1", "event_id": "same"}"#;
    let a = h.call("POST", "/v1/events", A, event).json();
    assert_eq!(a["deliveries"].as_array().unwrap().len(), 1);
    // B's event with the same id is B's own, not a duplicate of A's.
    let b = h.call("POST", "/v1/events", B, event).json();
    assert_eq!(b["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(b["duplicates"], json!([]));
    assert_eq!(receiver.wait_for("/a", 1, WAIT).len(), 1);
    assert_eq!(receiver.wait_for("/b", 1, WAIT).len(), 1);
    assert!(eventually(WAIT, || h.engine().stats().unwrap().delivered == 2));
    assert_eq!(
        receiver.received().len(),
        2,
        "each event reached its own tenant only"
    );
}

#[test]
fn vendor_dialects_keep_tenants_apart_too() {
    let h = Harness::new();
    let so =
        json!({"Name": "n", "Events": ["contact.created"], "TargetUrl": "https://r.example/so"});
    let so_id = h
        .call("POST", "/superoffice/api/v1/Webhook", A, &so.to_string())
        .json()["WebhookId"]
        .clone();
    let at = json!({"Name": "n", "WebhookUrl": "https://r.example/at", "IsSubscribedToUpdateEvents": true});
    let at_id = h
        .call(
            "POST",
            "/autotask/atservicesrest/v1.0/CompanyWebhooks",
            A,
            &at.to_string(),
        )
        .json()["itemId"]
        .clone();
    let pl = json!({"url": "https://r.example/pl", "events": ["Account.*"]});
    let pl_id = h
        .call(
            "POST",
            "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks",
            A,
            &pl.to_string(),
        )
        .json()["data"]["id"]
        .clone();
    let pl_id = pl_id.as_str().unwrap();

    for (method, path, body) in [
        (
            "GET",
            format!("/superoffice/api/v1/Webhook/{so_id}"),
            String::new(),
        ),
        (
            "PUT",
            format!("/superoffice/api/v1/Webhook/{so_id}"),
            so.to_string(),
        ),
        (
            "PATCH",
            format!("/superoffice/api/v1/Webhook/{so_id}"),
            r#"{"Name": "x"}"#.into(),
        ),
        (
            "DELETE",
            format!("/superoffice/api/v1/Webhook/{so_id}"),
            String::new(),
        ),
        (
            "GET",
            format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}"),
            String::new(),
        ),
        (
            "DELETE",
            format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}"),
            String::new(),
        ),
        (
            "PATCH",
            "/autotask/atservicesrest/v1.0/CompanyWebhooks".into(),
            json!({"id": at_id, "Name": "x"}).to_string(),
        ),
        (
            "GET",
            format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}/Fields"),
            String::new(),
        ),
        (
            "POST",
            format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}/Fields"),
            r#"{"FieldID": 1, "IsSubscribedField": true}"#.into(),
        ),
        (
            "GET",
            format!("/pipeliner/api/v100/rest/spaces/1/entities/Webhooks/{pl_id}"),
            String::new(),
        ),
        (
            "PATCH",
            format!("/pipeliner/api/v100/rest/spaces/1/entities/Webhooks/{pl_id}"),
            r#"{"url": "https://evil.example/"}"#.into(),
        ),
        (
            "DELETE",
            format!("/pipeliner/api/v100/rest/spaces/1/entities/Webhooks/{pl_id}"),
            String::new(),
        ),
    ] {
        let answer = h.call(method, &path, B, &body);
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.text());
    }
    let listed = h.call(
        "POST",
        "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
        B,
        "{}",
    );
    assert_eq!(listed.json(), json!([]));
    let queried = h.call(
        "POST",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks/query",
        B,
        r#"{"filter": [{"op": "exist", "field": "id"}]}"#,
    );
    assert_eq!(queried.json()["items"], json!([]));
    let listed = h.call(
        "GET",
        "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks",
        B,
        "",
    );
    assert_eq!(listed.json()["data"], json!([]));
    let soap_query = crate::soap::query_envelope("AccountWebhook", "id", "isnotnull");
    let answer = h.call("POST", "/autotask/atservices/1.6/atws.asmx", B, &soap_query);
    assert!(!answer.text().contains("<Entity "), "{}", answer.text());

    // A still has all three, unchanged.
    let mine: Value = h.call("GET", "/v1/subscriptions", A, "").json();
    let names: Vec<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target_url"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "https://r.example/so",
            "https://r.example/at",
            "https://r.example/pl"
        ]
    );
}

#[test]
fn unauthorized_callers_get_401_in_the_dialect_s_shape() {
    let h = Harness::new();
    let native = h.call("GET", "/v1/subscriptions", "", "");
    assert_eq!(native.status, 401);
    assert_eq!(native.json()["error"]["code"], "unauthorized");
    assert!(native.headers.contains_key("www-authenticate"));
    assert_eq!(h.call("GET", "/v1/subscriptions", "wrong", "").status, 401);
    let so = h.call("POST", "/superoffice/api/v1/Webhook", "wrong", "{}");
    assert_eq!(so.status, 401);
    assert!(so.json()["Error"].is_string());
    let at = h.call(
        "GET",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks/1",
        "wrong",
        "",
    );
    assert_eq!(at.status, 401);
    assert!(at.json()["errors"].is_array());
    let pl = h.call(
        "GET",
        "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks",
        "wrong",
        "",
    );
    assert_eq!(pl.status, 401);
    assert_eq!(pl.json()["success"], false);
    let soap = h.call("POST", "/autotask/atservices/1.6/atws.asmx", "wrong", "");
    assert_eq!(soap.status, 401);
    assert!(soap.text().contains("<faultcode>soap:Client</faultcode>"));
}
