//! Autotask's REST dialect: the seed's request, `itemId` / `item` / `items` + `pageDetails`,
//! PATCH and PUT, queries, the child collections, the duplicate rule, errors, and a callout
//! in Autotask's format once the webhook is Ready.

use callout_testkit::Receiver;
use serde_json::{json, Value};

use crate::{Harness, A, WAIT};

/// The sample request of `seeds/autotask-webhooks-rest.txt`, verbatim.
pub(crate) const REST_SAMPLE: &str = include_str!("../seeds/autotask-webhooks-rest.json");

const BASE: &str = "/autotask/atservicesrest/v1.0";

/// The keys of an Autotask REST webhook as answered.
pub(crate) const REST_KEYS: &[&str] = &[
    "id",
    "WebhookGUID",
    "Name",
    "WebhookUrl",
    "DeactivationUrl",
    "IsActive",
    "IsReady",
    "IsSubscribedToCreateEvents",
    "IsSubscribedToUpdateEvents",
    "IsSubscribedToDeleteEvents",
    "SecretKey",
    "SendThresholdExceededNotification",
    "NotificationEmailAddress",
    "OwnerResourceID",
    "Fields",
    "UdfFields",
    "ExcludedResources",
];

pub(crate) fn assert_rest_webhook(item: &Value) {
    let mut keys: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = REST_KEYS.to_vec();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{item}");
    assert_eq!(item["SecretKey"], Value::Null);
}

#[test]
fn the_seed_sample_is_created_read_and_queried_in_autotask_s_shapes() {
    let h = Harness::new();
    let created = h.call("POST", &format!("{BASE}/CompanyWebhooks"), A, REST_SAMPLE);
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json()["itemId"].as_u64().unwrap();
    let item = h
        .call("GET", &format!("{BASE}/CompanyWebhooks/{id}"), A, "")
        .json()["item"]
        .clone();
    assert_rest_webhook(&item);
    assert_eq!(item["Name"], "myintegration.Accounts.Modify");
    assert_eq!(item["IsSubscribedToUpdateEvents"], true);
    assert_eq!(item["IsReady"], false, "no subscribed field yet");
    assert!(item["WebhookGUID"].as_str().unwrap().len() >= 32);
    // Case-insensitive paths, as Autotask's.
    let again = h.call(
        "GET",
        &format!("/autotask/ATServicesRest/V1.0/companywebhooks/{id}"),
        A,
        "",
    );
    assert_eq!(again.status, 200);
    // Another entity's endpoint does not see a Company webhook.
    assert_eq!(
        h.call("GET", &format!("{BASE}/ContactWebhooks/{id}"), A, "")
            .status,
        404
    );

    let query =
        r#"{"filter": [{"op": "eq", "field": "Name", "value": "MYINTEGRATION.Accounts.Modify"}]}"#;
    let found = h
        .call("POST", &format!("{BASE}/CompanyWebhooks/query"), A, query)
        .json();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["pageDetails"]["count"], 1);
    assert_eq!(found["pageDetails"]["nextPageUrl"], Value::Null);
    let search = "%7B%22filter%22%3A%5B%7B%22op%22%3A%22gt%22%2C%22field%22%3A%22id%22%2C%22value%22%3A0%7D%5D%7D";
    let got = h
        .call(
            "GET",
            &format!("{BASE}/CompanyWebhooks/query?search={search}"),
            A,
            "",
        )
        .json();
    assert_eq!(got["items"][0]["id"], id);
    let count = h
        .call(
            "POST",
            &format!("{BASE}/CompanyWebhooks/query/count"),
            A,
            r#"{"filter": [{"op": "exist", "field": "id"}]}"#,
        )
        .json();
    assert_eq!(count, json!({"queryCount": 1}));
    let fields = h
        .call(
            "POST",
            &format!("{BASE}/CompanyWebhooks/query"),
            A,
            r#"{"filter": [{"op": "exist", "field": "id"}], "IncludeFields": ["Name"]}"#,
        )
        .json();
    assert_eq!(
        fields["items"][0],
        json!({"id": id, "Name": "myintegration.Accounts.Modify"})
    );
}

#[test]
fn patch_and_put_change_the_webhook_and_the_duplicate_rule_holds() {
    let h = Harness::new();
    let id = h
        .call("POST", &format!("{BASE}/CompanyWebhooks"), A, REST_SAMPLE)
        .json()["itemId"]
        .clone();
    let duplicate = h.call("POST", &format!("{BASE}/CompanyWebhooks"), A, REST_SAMPLE);
    assert_eq!(duplicate.status, 400);
    assert!(duplicate.json()["errors"][0]
        .as_str()
        .unwrap()
        .contains("WebhookUrl"));
    // Another callout type to the same URL is no duplicate.
    let creates = REST_SAMPLE.replace("IsSubscribedToUpdateEvents", "IsSubscribedToCreateEvents");
    assert_eq!(
        h.call("POST", &format!("{BASE}/CompanyWebhooks"), A, &creates)
            .status,
        200
    );

    let patched = h.call(
        "PATCH",
        &format!("{BASE}/CompanyWebhooks"),
        A,
        &json!({"id": id, "name": "renamed", "IsActive": false}).to_string(),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["itemId"], id);
    let item = h
        .call("GET", &format!("{BASE}/CompanyWebhooks/{id}"), A, "")
        .json()["item"]
        .clone();
    assert_eq!(item["Name"], "renamed");
    assert_eq!(item["IsActive"], false);
    assert_eq!(
        item["WebhookUrl"],
        "https://wrkhbq676nwh8.d.samplecompany.net"
    );

    let put = json!({"id": id, "Name": "replaced", "WebhookUrl": "https://new.example/", "IsSubscribedToDeleteEvents": true});
    assert_eq!(
        h.call(
            "PUT",
            &format!("{BASE}/CompanyWebhooks"),
            A,
            &put.to_string()
        )
        .status,
        200
    );
    let item = h
        .call("GET", &format!("{BASE}/CompanyWebhooks/{id}"), A, "")
        .json()["item"]
        .clone();
    assert_eq!(item["Name"], "replaced");
    assert_eq!(item["IsSubscribedToUpdateEvents"], false);
    assert_eq!(item["DeactivationUrl"], Value::Null);
    let stored = h
        .engine()
        .subscriptions()
        .get(id.as_u64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secrets[0].expose(),
        "12345678",
        "PUT without SecretKey keeps it"
    );

    for (method, body, needle) in [
        ("PATCH", json!({"Name": "no id"}), "id"),
        (
            "PATCH",
            json!({"id": id, "WebhookUrl": "nope"}),
            "WebhookUrl",
        ),
        ("PATCH", json!({"id": id, "Colour": 1}), "Colour"),
        (
            "PUT",
            json!({"id": 424242, "Name": "n", "WebhookUrl": "https://x.example/", "IsSubscribedToUpdateEvents": true}),
            "424242",
        ),
    ] {
        let answer = h.call(
            method,
            &format!("{BASE}/CompanyWebhooks"),
            A,
            &body.to_string(),
        );
        assert!(answer.status.is_client_error(), "{body}: {}", answer.text());
        let message = answer.json()["errors"][0].as_str().unwrap().to_string();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let deleted = h.call("DELETE", &format!("{BASE}/CompanyWebhooks/{id}"), A, "");
    assert_eq!(deleted.json(), json!({"itemId": id}));
    assert_eq!(
        h.call("GET", &format!("{BASE}/CompanyWebhooks/{id}"), A, "")
            .status,
        404
    );
}

#[test]
fn child_collections_make_a_webhook_ready_and_are_listed_changed_and_deleted() {
    let h = Harness::new();
    let id = h
        .call("POST", &format!("{BASE}/CompanyWebhooks"), A, REST_SAMPLE)
        .json()["itemId"]
        .clone();
    let fields = format!("{BASE}/CompanyWebhooks/{id}/Fields");
    let added = h.call(
        "POST",
        &fields,
        A,
        r#"{"FieldID": 13, "IsSubscribedField": true, "IsDisplayAlwaysField": false}"#,
    );
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(added.json(), json!({"itemId": 13}));
    assert_eq!(
        h.call(
            "POST",
            &fields,
            A,
            r#"{"FieldID": 13, "IsSubscribedField": true}"#
        )
        .status,
        400
    );
    let item = h
        .call("GET", &format!("{BASE}/CompanyWebhooks/{id}"), A, "")
        .json()["item"]
        .clone();
    assert_eq!(item["IsReady"], true);
    let listed = h.call("GET", &fields, A, "").json();
    assert_eq!(
        listed["items"],
        json!([{"id": 13, "WebhookID": id, "FieldID": 13, "IsSubscribedField": true, "IsDisplayAlwaysField": false}])
    );
    assert_eq!(listed["pageDetails"]["count"], 1);
    let one = h.call("GET", &format!("{fields}/13"), A, "").json();
    assert_eq!(one["item"]["FieldID"], 13);
    let changed = h.call(
        "PATCH",
        &fields,
        A,
        r#"{"id": 13, "IsDisplayAlwaysField": true}"#,
    );
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(
        h.call("GET", &fields, A, "").json()["items"][0]["IsDisplayAlwaysField"],
        true
    );

    let udf = format!("{BASE}/CompanyWebhooks/{id}/UdfFields");
    assert_eq!(
        h.call(
            "POST",
            &udf,
            A,
            r#"{"UdfFieldID": 29682, "IsSubscribedField": true}"#
        )
        .status,
        200
    );
    let excluded = format!("{BASE}/CompanyWebhooks/{id}/ExcludedResources");
    assert_eq!(
        h.call("POST", &excluded, A, r#"{"ResourceID": 29682885}"#)
            .json(),
        json!({"itemId": 29682885})
    );
    assert_eq!(
        h.call("GET", &excluded, A, "").json()["items"][0]["ResourceID"],
        29682885
    );
    let stored = h
        .engine()
        .subscriptions()
        .get(id.as_u64().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.excluded_actors, ["29682885"]);
    assert_eq!(
        stored.secrets[0].expose(),
        "12345678",
        "children keep the secret"
    );

    assert_eq!(
        h.call("DELETE", &format!("{excluded}/29682885"), A, "")
            .json(),
        json!({"itemId": 29682885})
    );
    assert_eq!(
        h.call("DELETE", &format!("{fields}/13"), A, "").json(),
        json!({"itemId": 13})
    );
    assert_eq!(h.call("DELETE", &format!("{fields}/13"), A, "").status, 404);
    assert_eq!(h.call("GET", &excluded, A, "").json()["items"], json!([]));
    assert_eq!(
        h.call("POST", &fields, A, r#"{"IsSubscribedField": true}"#)
            .status,
        400
    );
    assert_eq!(
        h.call("GET", &format!("{BASE}/CompanyWebhooks/{id}/Nope"), A, "")
            .status,
        404
    );
    assert_eq!(
        h.call(
            "POST",
            &format!("{BASE}/CompanyWebhooks/999/Fields"),
            A,
            "{}"
        )
        .status,
        404
    );
}

#[test]
fn bad_queries_and_paths_get_autotask_errors() {
    let h = Harness::new();
    for (method, path, body) in [
        (
            "POST",
            format!("{BASE}/CompanyWebhooks/query"),
            r#"{"filter": [{"op": "like", "field": "id", "value": 1}]}"#,
        ),
        (
            "POST",
            format!("{BASE}/CompanyWebhooks/query"),
            r#"{"filter": [{"op": "eq", "field": "Colour", "value": 1}]}"#,
        ),
        (
            "POST",
            format!("{BASE}/CompanyWebhooks/query"),
            r#"{"filter": [], "MaxRecords": 0}"#,
        ),
        (
            "POST",
            format!("{BASE}/CompanyWebhooks/query"),
            r#"{"filtr": []}"#,
        ),
        ("GET", format!("{BASE}/CompanyWebhooks/query"), ""),
        (
            "GET",
            format!("{BASE}/CompanyWebhooks/query?search=%7Bnope"),
            "",
        ),
        ("POST", format!("{BASE}/CompanyWebhooks"), "[]"),
        (
            "POST",
            format!("{BASE}/CompanyWebhooks"),
            r#"{"Name": "n", "WebhookUrl": "https://x.example/"}"#,
        ),
        ("GET", format!("{BASE}/CompanyWebhooks/abc"), ""),
    ] {
        let answer = h.call(method, &path, A, body);
        assert_eq!(
            answer.status,
            400,
            "{method} {path} {body}: {}",
            answer.text()
        );
        assert!(answer.json()["errors"][0].is_string());
    }
    assert_eq!(
        h.call("GET", &format!("{BASE}/WidgetWebhooks/1"), A, "")
            .status,
        404
    );
    assert_eq!(
        h.call("DELETE", &format!("{BASE}/CompanyWebhooks"), A, "")
            .status,
        404
    );
}

#[test]
fn a_ready_webhook_gets_autotask_callouts() {
    let h = Harness::new();
    let receiver = Receiver::ok();
    let body = REST_SAMPLE.replace(
        r#""WebhookUrl": "https://wrkhbq676nwh8.d.samplecompany.net""#,
        &format!(r#""WebhookUrl": "{}/autotask""#, receiver.url),
    );
    let id = h
        .call("POST", &format!("{BASE}/CompanyWebhooks"), A, &body)
        .json()["itemId"]
        .clone();
    h.call(
        "POST",
        &format!("{BASE}/CompanyWebhooks/{id}/Fields"),
        A,
        r#"{"FieldID": "companyName", "IsSubscribedField": true}"#,
    );
    let event = r#"{"entity": "Company", "action": "updated", "id": "351182", "actor": "30691780",
                    "data": {"companyName": "New"}, "previous": {"companyName": "Old"}}"#;
    assert_eq!(h.call("POST", "/v1/events", A, event).status, 202);
    let got = receiver.wait_for("/autotask", 1, WAIT);
    assert_eq!(got.len(), 1);
    let callout = got[0].json();
    assert_eq!(callout["Action"], "Update");
    assert_eq!(callout["EntityType"], "Account");
    assert_eq!(callout["Id"], 351182);
    assert_eq!(callout["Fields"], json!({"companyName": "New"}));
    assert!(got[0]
        .header("X-Hook-Signature")
        .unwrap()
        .starts_with("sha1="));
}
