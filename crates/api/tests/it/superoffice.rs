//! SuperOffice's dialect: the seeds' requests, `WebhookWithLinks`, `$select`, GetAllWebhooks
//! filters, PUT / PATCH / DELETE, errors naming the field, and a delivery in SuperOffice's
//! format to a webhook registered through it.

use callout_testkit::Receiver;
use serde_json::{json, Value};

use crate::{Harness, A, WAIT};

/// The sample request of `seeds/superoffice-post-webhook.txt`, verbatim.
pub(crate) const POST_SAMPLE: &str = include_str!("../seeds/superoffice-post-webhook.json");

/// The sample request of `seeds/superoffice-get-all-webhooks.txt`, verbatim.
pub(crate) const GET_ALL_SAMPLE: &str = include_str!("../seeds/superoffice-get-all-webhooks.json");

/// The webhook of the GetAllWebhooks sample response, as a client would save it.
pub(crate) fn ticket_webhook(target: &str) -> String {
    json!({
        "Name": "Ticket System Integration",
        "Events": ["ticket.created", "ticket.changed"],
        "TargetUrl": target,
        "Secret": "sk_live_a1b2c3d4e5f6g7h8i9j0",
        "State": "Active",
        "Type": "webhook",
        "Headers": {"X-Service-Key": "support_integration_v2", "X-Webhook-Version": "1.0"},
        "Properties": {"fieldName": {}},
        "ErrorsEmail": "support-admin@example.com"
    })
    .to_string()
}

/// The keys of the seeds' `WebhookWithLinks` sample response.
pub(crate) const WEBHOOK_WITH_LINKS: &[&str] = &[
    "WebhookId",
    "Name",
    "Events",
    "TargetUrl",
    "Secret",
    "State",
    "Type",
    "Headers",
    "Properties",
    "Registered",
    "RegisteredAssociate",
    "Updated",
    "UpdatedAssociate",
    "ErrorsEmail",
    "_Links",
];

pub(crate) fn assert_webhook_with_links(value: &Value) {
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = WEBHOOK_WITH_LINKS.to_vec();
    let mut keys_sorted = keys.clone();
    expected.sort_unstable();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected, "{value}");
    assert!(value["_Links"]["Self"]
        .as_str()
        .unwrap()
        .contains("/Webhook/"));
}

#[test]
fn the_seed_post_sample_is_refused_for_its_placeholder_type_naming_the_field() {
    let h = Harness::new();
    let answer = h.call("POST", "/superoffice/api/v1/Webhook", A, POST_SAMPLE);
    assert_eq!(answer.status, 400);
    let error = answer.json();
    assert_eq!(error["ErrorSource"], "Type");
    assert!(error["Error"].as_str().unwrap().contains("ratione"));
    assert_eq!(error["ErrorType"], "ArgumentException");
    let typed = POST_SAMPLE.replace(r#""ratione""#, r#""webhook""#);
    let answer = h.call("POST", "/superoffice/api/v1/Webhook", A, &typed);
    assert_eq!(answer.json()["ErrorSource"], "Events");
    assert!(h
        .engine()
        .subscriptions()
        .list(&Default::default())
        .unwrap()
        .is_empty());
}

#[test]
fn webhooks_are_created_read_selected_listed_patched_and_deleted() {
    let h = Harness::new();
    let created = h.call(
        "POST",
        "/superoffice/api/v1/Webhook",
        A,
        &ticket_webhook("https://support.example.com/api/webhooks/tickets"),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    assert_webhook_with_links(&created);
    assert_eq!(created["State"], "Active");
    assert_eq!(created["Type"], "webhook");
    assert_eq!(
        created["Headers"]["X-Service-Key"],
        "support_integration_v2"
    );
    let id = created["WebhookId"].as_u64().unwrap();

    let got = h
        .call("GET", &format!("/superoffice/api/v1/Webhook/{id}"), A, "")
        .json();
    assert_eq!(got["Name"], "Ticket System Integration");
    let selected = h
        .call(
            "GET",
            &format!("/superoffice/api/v1/Webhook/{id}?$select=name,headers/X-Service-Key"),
            A,
            "",
        )
        .json();
    assert_eq!(selected["Name"], "Ticket System Integration");
    assert_eq!(selected["TargetUrl"], Value::Null);
    assert_eq!(
        selected["Headers"],
        json!({"X-Service-Key": "support_integration_v2", "X-Webhook-Version": null})
    );

    let sample = h.call(
        "POST",
        "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
        A,
        GET_ALL_SAMPLE,
    );
    assert_eq!(sample.status, 200);
    assert_eq!(
        sample.json(),
        json!([]),
        "the sample's filters match nothing"
    );
    let all = h
        .call(
            "POST",
            "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks?$select=WebhookId",
            A,
            r#"{"NameFilter": "ticket", "EventFilter": "ticket.changed", "StatusFilter": "Active"}"#,
        )
        .json();
    assert_eq!(all[0]["WebhookId"], id);
    assert_eq!(all[0]["Name"], Value::Null);
    let stopped = h.call(
        "POST",
        "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
        A,
        r#"{"StatusFilter": "Stopped"}"#,
    );
    assert_eq!(stopped.json(), json!([]));

    let patched = h.call(
        "PATCH",
        &format!("/superoffice/api/v1/Webhook/{id}"),
        A,
        r#"[{"op": "replace", "path": "/State", "value": "Stopped"}, {"op": "add", "path": "/Events/-", "value": "ticket.deleted"}]"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["State"], "Stopped");
    assert_eq!(patched.json()["Events"].as_array().unwrap().len(), 3);
    let merged = h.call(
        "PATCH",
        &format!("/superoffice/api/v1/Webhook/{id}"),
        A,
        r#"{"name": "Renamed", "State": 1}"#,
    );
    assert_eq!(merged.json()["Name"], "Renamed");
    assert_eq!(merged.json()["State"], "Active");
    let put = h.call(
        "PUT",
        &format!("/superoffice/api/v1/Webhook/{id}"),
        A,
        &ticket_webhook("https://support.example.com/v2"),
    );
    assert_eq!(put.json()["TargetUrl"], "https://support.example.com/v2");
    assert_eq!(put.json()["WebhookId"], id);

    let deleted = h.call(
        "DELETE",
        &format!("/superoffice/api/v1/Webhook/{id}"),
        A,
        "",
    );
    assert_eq!(deleted.status, 204);
    let gone = h.call("GET", &format!("/superoffice/api/v1/Webhook/{id}"), A, "");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["ErrorType"], "NotFoundException");
}

#[test]
fn bad_requests_get_superoffice_errors_naming_the_field() {
    let h = Harness::new();
    let id = h
        .call(
            "POST",
            "/superoffice/api/v1/Webhook",
            A,
            &ticket_webhook("https://r.example/"),
        )
        .json()["WebhookId"]
        .clone();
    for (method, path, body, field) in [
        (
            "POST",
            "/superoffice/api/v1/Webhook".to_string(),
            r#"{"Name": "n", "Events": ["a.b"], "TargetUrl": "nope"}"#,
            "TargetUrl",
        ),
        (
            "POST",
            "/superoffice/api/v1/Webhook".to_string(),
            r#"{"Name": "n", "Events": ["a.b"], "TargetUrl": "https://r.example/", "Colour": 1}"#,
            "Colour",
        ),
        (
            "POST",
            "/superoffice/api/v1/Webhook".to_string(),
            "{not json",
            "",
        ),
        (
            "PATCH",
            format!("/superoffice/api/v1/Webhook/{id}"),
            r#"[{"op": "replace", "path": "/Nope", "value": 1}]"#,
            "/Nope",
        ),
        (
            "PATCH",
            format!("/superoffice/api/v1/Webhook/{id}"),
            r#"{"State": "Paused"}"#,
            "State",
        ),
        (
            "PATCH",
            format!("/superoffice/api/v1/Webhook/{id}"),
            "7",
            "",
        ),
        (
            "GET",
            "/superoffice/api/v1/Webhook/abc".to_string(),
            "",
            "WebhookId",
        ),
        (
            "POST",
            "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks".to_string(),
            r#"{"StatusFilter": "Paused"}"#,
            "StatusFilter",
        ),
    ] {
        let answer = h.call(method, &path, A, body);
        assert_eq!(
            answer.status,
            400,
            "{method} {path} {body}: {}",
            answer.text()
        );
        assert_eq!(
            answer.json()["ErrorSource"],
            field,
            "{method} {path} {body}"
        );
    }
    assert_eq!(
        h.call("DELETE", "/superoffice/api/v1/Webhook", A, "")
            .status,
        405
    );
    assert_eq!(
        h.call("GET", "/superoffice/api/v1/Other", A, "").status,
        404
    );
    let unchanged = h
        .call("GET", &format!("/superoffice/api/v1/Webhook/{id}"), A, "")
        .json();
    assert_eq!(unchanged["State"], "Active");
}

#[test]
fn a_webhook_registered_through_superoffice_gets_superoffice_deliveries() {
    let h = Harness::new();
    let receiver = Receiver::ok();
    let created = h
        .call(
            "POST",
            "/superoffice/api/v1/Webhook",
            A,
            &ticket_webhook(&format!("{}/tickets", receiver.url)),
        )
        .json();
    h.call(
        "POST",
        "/v1/events",
        A,
        r#"{"entity": "ticket", "action": "changed", "id": "18", "changed": ["title"]}"#,
    );
    let got = receiver.wait_for("/tickets", 1, WAIT);
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["Event"], "ticket.changed");
    assert_eq!(body["PrimaryKey"], 18);
    assert_eq!(body["WebhookName"], created["Name"]);
    assert_eq!(body["ContextIdentifier"], "tenant-a");
    assert!(got[0].header("X-SuperOffice-Signature").is_some());
}

#[test]
fn a_save_with_test_true_sends_a_test_event_first_and_saves_only_on_200() {
    use callout_testkit::Reply;
    let h = Harness::new();
    let refusing = Receiver::start(|_, _| Reply::status(500));
    let answer = h.call(
        "POST",
        "/superoffice/api/v1/Webhook?test=true",
        A,
        &ticket_webhook(&format!("{}/hook", refusing.url)),
    );
    assert!(answer.status.is_client_error() || answer.status.is_server_error());
    let got = refusing.wait_for("/hook", 1, WAIT);
    assert_eq!(got[0].header("X-Hook-Test"), Some("true"));
    assert_eq!(got[0].json()["Event"], "test");
    assert!(
        h.engine()
            .subscriptions()
            .list(&Default::default())
            .unwrap()
            .is_empty(),
        "nothing saved after a refused test"
    );

    let accepting = Receiver::ok();
    let answer = h.call(
        "POST",
        "/superoffice/api/v1/Webhook?test=true",
        A,
        &ticket_webhook(&format!("{}/hook", accepting.url)),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(accepting.wait_for("/hook", 1, WAIT).len(), 1);
    assert_eq!(
        h.engine()
            .subscriptions()
            .list(&Default::default())
            .unwrap()
            .len(),
        1
    );
}
