//! Secrets are write-only in every dialect: whatever is created with one, no answer carries it,
//! and a document read back and saved again keeps it.

use serde_json::json;

use crate::{Harness, A};

const SO_SECRET: &str = "so-secret-4f1c9a";
const AT_SECRET: &str = "at-secret-77ab20";
const PL_SECRET: &str = "01234567-abcd-dcba-ffff-00000000beef";
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn assert_hidden(what: &str, text: &str) {
    for secret in [SO_SECRET, AT_SECRET, PL_SECRET, STD_SECRET, "MfKQ9r8G"] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
    }
}

#[test]
fn no_answer_of_any_dialect_carries_a_secret() {
    let h = Harness::new();
    let mut answers = Vec::new();
    let mut call = |method: &str, path: &str, body: &str| {
        let answer = h.call(method, path, A, body);
        assert!(
            answer.status.is_success(),
            "{method} {path}: {}",
            answer.text()
        );
        answers.push((format!("{method} {path}"), answer.text()));
        answer
    };
    let native = call(
        "POST",
        "/v1/subscriptions",
        &json!({"target_url": "https://r.example/std", "events": ["contact.*"], "secrets": [STD_SECRET]})
            .to_string(),
    )
    .json();
    assert_eq!(native["secret_count"], 1);
    let id = native["id"].clone();
    call("GET", &format!("/v1/subscriptions/{id}"), "");
    call(
        "PATCH",
        &format!("/v1/subscriptions/{id}"),
        r#"{"name": "renamed"}"#,
    );
    call("GET", "/v1/subscriptions", "");

    let so = call(
        "POST",
        "/superoffice/api/v1/Webhook",
        &json!({"Name": "so", "Events": ["contact.created"], "TargetUrl": "https://r.example/so", "Secret": SO_SECRET})
            .to_string(),
    )
    .json();
    assert_eq!(so["Secret"], serde_json::Value::Null);
    let so_id = so["WebhookId"].clone();
    call("GET", &format!("/superoffice/api/v1/Webhook/{so_id}"), "");
    call(
        "PATCH",
        &format!("/superoffice/api/v1/Webhook/{so_id}"),
        r#"[{"op": "replace", "path": "/Name", "value": "so2"}]"#,
    );
    call(
        "POST",
        "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
        "{}",
    );

    let at = call(
        "POST",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks",
        &json!({"Name": "at", "WebhookUrl": "https://r.example/at", "IsSubscribedToUpdateEvents": true, "SecretKey": AT_SECRET})
            .to_string(),
    )
    .json();
    let at_id = at["itemId"].clone();
    let item = call(
        "GET",
        &format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}"),
        "",
    )
    .json();
    assert_eq!(item["item"]["SecretKey"], serde_json::Value::Null);
    call(
        "POST",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks/query",
        r#"{"filter": [{"op": "exist", "field": "id"}]}"#,
    );
    call(
        "POST",
        "/autotask/atservices/1.6/atws.asmx",
        &crate::soap::query_envelope("AccountWebhook", "id", "isnotnull"),
    );

    let pl = call(
        "POST",
        "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks",
        &json!({"url": "https://r.example/pl", "events": ["Account.*"], "signature": PL_SECRET})
            .to_string(),
    )
    .json();
    let pl_id = pl["data"]["id"].as_str().unwrap().to_string();
    call(
        "GET",
        &format!("/pipeliner/api/v100/rest/spaces/1/entities/Webhooks/{pl_id}"),
        "",
    );
    call(
        "GET",
        "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks",
        "",
    );

    for (what, text) in &answers {
        assert_hidden(what, text);
    }
    // The secrets are still there, and still sign: every subscription kept its own.
    let stored = h
        .engine()
        .subscriptions()
        .list(&Default::default())
        .unwrap();
    let kept: Vec<&str> = stored.iter().map(|s| s.secrets[0].expose()).collect();
    assert_eq!(kept, [STD_SECRET, SO_SECRET, AT_SECRET, PL_SECRET]);
}

#[test]
fn a_document_read_back_and_saved_again_keeps_its_secret() {
    let h = Harness::new();
    let created = h
        .call(
            "POST",
            "/v1/subscriptions",
            A,
            &json!({"target_url": "https://r.example/", "events": ["a.b"], "secrets": [STD_SECRET]}).to_string(),
        )
        .json();
    let id = created["id"].as_u64().unwrap();
    let put = h.call(
        "PUT",
        &format!("/v1/subscriptions/{id}"),
        A,
        &created.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let so = h
        .call(
            "POST",
            "/superoffice/api/v1/Webhook",
            A,
            &json!({"Name": "so", "Events": ["a.b"], "TargetUrl": "https://r.example/so", "Secret": SO_SECRET}).to_string(),
        )
        .json();
    let so_id = so["WebhookId"].as_u64().unwrap();
    let put = h.call(
        "PUT",
        &format!("/superoffice/api/v1/Webhook/{so_id}"),
        A,
        &so.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let subs = h.engine().subscriptions();
    assert_eq!(
        subs.get(id).unwrap().unwrap().secrets[0].expose(),
        STD_SECRET
    );
    assert_eq!(
        subs.get(so_id).unwrap().unwrap().secrets[0].expose(),
        SO_SECRET
    );
    // "secrets": [] removes them, on purpose.
    let cleared = h.call(
        "PATCH",
        &format!("/v1/subscriptions/{id}"),
        A,
        r#"{"secrets": []}"#,
    );
    assert_eq!(cleared.json()["secret_count"], 0);
}

#[test]
fn credentials_never_show_in_debug_output() {
    let tokens = callout_api::Tokens::parse("hunter2 acme ops\n").unwrap();
    assert!(!format!("{tokens:?}").contains("hunter2"));
}

#[test]
fn a_secret_callout_makes_is_returned_once_by_the_call_that_made_it() {
    let h = Harness::new();
    let created = h
        .call(
            "POST",
            "/v1/subscriptions",
            A,
            r#"{"target_url": "https://r.example/", "events": ["a.b"]}"#,
        )
        .json();
    let made = created["new_secret"].as_str().unwrap().to_string();
    assert!(made.starts_with("whsec_"), "{created}");
    let id = created["id"].as_u64().unwrap();
    let again = h.call("GET", &format!("/v1/subscriptions/{id}"), A, "");
    assert!(!again.text().contains(&made));
    assert!(again.json().get("new_secret").is_none());

    let rotated = h.call(
        "POST",
        &format!("/v1/subscriptions/{id}/rotate-secret"),
        A,
        "",
    );
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let rotated = rotated.json();
    assert_eq!(
        rotated["secret_count"], 2,
        "the old one signs through the grace period"
    );
    let newer = rotated["new_secret"].as_str().unwrap();
    assert!(newer.starts_with("whsec_") && newer != made);
    let given = h.call(
        "POST",
        &format!("/v1/subscriptions/{id}/rotate-secret"),
        A,
        &json!({"secret": STD_SECRET, "grace_seconds": 0}).to_string(),
    );
    assert_eq!(given.status, 200, "{}", given.text());
    assert!(
        given.json().get("new_secret").is_none(),
        "a given secret is not echoed"
    );
    assert_hidden("rotate", &given.text());
    let stored = h.engine().subscriptions().get(id).unwrap().unwrap();
    assert_eq!(stored.secrets.last().unwrap().expose(), STD_SECRET);
    for (body, field) in [
        (r#"{"secret": "not-a-whsec"}"#, "secrets"),
        (
            r#"{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#,
            "secrets",
        ),
        (r#"{"grace_seconds": 99999999999}"#, "grace_seconds"),
    ] {
        let refused = h.call(
            "POST",
            &format!("/v1/subscriptions/{id}/rotate-secret"),
            A,
            body,
        );
        assert_eq!(refused.status, 400, "{body}: {}", refused.text());
        assert_eq!(refused.json()["error"]["field"], field, "{body}");
    }
    let typo = h.call(
        "POST",
        &format!("/v1/subscriptions/{id}/rotate-secret"),
        A,
        r#"{"secrte": "x"}"#,
    );
    assert_eq!(typo.status, 400);
    assert_eq!(
        h.call("POST", "/v1/subscriptions/999/rotate-secret", A, "")
            .status,
        404
    );
}
