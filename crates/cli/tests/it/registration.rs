//! The vendors' registration documents through the command line, as their clients send them:
//! Autotask's SOAP envelope and REST body checked for what Autotask requires, SuperOffice's
//! `GetAllWebhooks` request as a list filter, and the Pipeliner space the bodies name.

use std::path::Path;

use serde_json::json;

use crate::Store;
use callout_testkit::{Receiver, Reply};

/// `seeds/autotask-webhook-soap.txt`'s sample request, as it is (it ends without
/// `</soap:Envelope>`).
const AUTOTASK_SOAP: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<soap:Header>
<AutotaskIntegrations xmlns="http://autotask.net/ATWS/v1_6/">
<IntegrationCode>INSERTYOUROWN</IntegrationCode>
</AutotaskIntegrations>
</soap:Header>
<soap:Body>
<create xmlns="http://autotask.net/ATWS/v1_6/">
<Entities>
<Entity xsi:type="AccountWebhook" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<Active>True</Active>
<DeactivationUrl>https://enkmoj676nwh8.x.pipedream.net</DeactivationUrl>
<IsSubscribedToUpdateEvents>True</IsSubscribedToUpdateEvents>
<Name>Angela.Accounts.Modify</Name>
<SecretKey>20201</SecretKey>
<WebhookUrl>https://enymf79yfhr0d.x.pipedream.net</WebhookUrl>
</Entity>
</Entities>
</create>
</soap:Body>"#;

/// `seeds/autotask-webhooks-rest.txt`'s sample request body, as it is.
const AUTOTASK_REST: &str = r#"{
"IsActive": true,
"DeactivationUrl": "https://wrkhbq676nwh8.d.samplecompany.net",
"IsSubscribedToUpdateEvents": true,
"Name": "myintegration.Accounts.Modify",
"SecretKey": "12345678",
"SendThresholdExceededNotification": false,
"WebhookUrl": "https://wrkhbq676nwh8.d.samplecompany.net"
}"#;

/// `seeds/superoffice-get-all-webhooks.txt`'s sample request body, as it is.
const GET_ALL_WEBHOOKS: &str = r#"{
"NameFilter": "Johns Inc and Sons",
"EventFilter": "qui",
"StatusFilter": "Active"
}"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.display().to_string()
}

fn create_autotask<'a>(file: &'a str, entity: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "subscriptions",
        "create",
        "--format",
        "autotask",
        "--file",
        file,
    ];
    args.extend_from_slice(entity);
    args
}

#[test]
fn the_autotask_soap_envelope_creates_a_subscription_its_xsi_type_naming_the_entity() {
    let store = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let soap = write(dir.path(), "webhook.xml", AUTOTASK_SOAP);
    let created = store.json(&create_autotask(&soap, &[]));
    assert_eq!(created["profile"], "autotask");
    assert_eq!(created["name"], "Angela.Accounts.Modify");
    assert_eq!(created["events"], json!(["account.updated"]));
    assert_eq!(
        created["target_url"],
        "https://enymf79yfhr0d.x.pipedream.net"
    );
    assert_eq!(
        created["deactivation_url"],
        "https://enkmoj676nwh8.x.pipedream.net"
    );
    let shown = store.json(&[
        "subscriptions",
        "show",
        &created["id"].to_string(),
        "--format",
        "autotask",
        "--show-secrets",
    ]);
    assert_eq!(shown["SecretKey"], "20201");
    // From stdin too, and with an --entity that agrees (Company is Account).
    let ran = store.run_with_stdin(
        &create_autotask("-", &["--entity", "Company"]),
        AUTOTASK_SOAP.as_bytes(),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let line = store.fails(&create_autotask(&soap, &["--entity", "Contact"]), 2);
    assert!(line.contains("xsi:type"), "{line}");
}

#[test]
fn autotask_documents_are_refused_without_a_field_autotask_requires() {
    let store = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let rest = write(dir.path(), "rest.json", AUTOTASK_REST);
    store.ok(&create_autotask(&rest, &["--entity", "Company"]));
    for (field, document) in [
        (
            "DeactivationUrl",
            AUTOTASK_REST.replace(
                "\"DeactivationUrl\": \"https://wrkhbq676nwh8.d.samplecompany.net\",",
                "",
            ),
        ),
        ("SecretKey", AUTOTASK_REST.replace("\"12345678\"", "\"\"")),
        ("IsActive", AUTOTASK_REST.replace("\"IsActive\": true,", "")),
    ] {
        let path = write(dir.path(), "bad.json", &document);
        let line = store.fails(&create_autotask(&path, &["--entity", "Company"]), 2);
        assert_eq!(
            line,
            format!("callout: Autotask webhook {field}: is required: Autotask creates no webhook without it")
        );
    }
    let soap = write(
        dir.path(),
        "bad.xml",
        &AUTOTASK_SOAP.replace("<SecretKey>20201</SecretKey>", ""),
    );
    let line = store.fails(&create_autotask(&soap, &[]), 2);
    assert!(line.contains("SecretKey: is required"), "{line}");
    let line = store.fails(&create_autotask(&rest, &[]), 2);
    assert!(line.contains("--entity"), "{line}");
    // Nothing refused was stored; the update of a webhook takes the same check.
    let listed = store.json(&["subscriptions", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let without_url = write(
        dir.path(),
        "put.json",
        &AUTOTASK_REST.replace(
            "\"DeactivationUrl\": \"https://wrkhbq676nwh8.d.samplecompany.net\",",
            "",
        ),
    );
    let line = store.fails(
        &[
            "subscriptions",
            "update",
            "1",
            "--format",
            "autotask",
            "--entity",
            "Company",
            "--file",
            &without_url,
        ],
        2,
    );
    assert!(line.contains("DeactivationUrl"), "{line}");
}

#[test]
fn superoffice_get_all_webhooks_requests_filter_the_list_in_superoffice_shape() {
    let store = Store::new();
    let dir = tempfile::tempdir().unwrap();
    let webhook = |name: &str, events: serde_json::Value, state: &str| {
        let document = json!({
            "Name": name, "Events": events, "TargetUrl": "https://so.example/hook",
            "Secret": "Something Super Secret", "State": state, "Type": "webhook"
        });
        store.ok(&[
            "subscriptions",
            "create",
            "--format",
            "superoffice",
            &document.to_string(),
        ]);
    };
    webhook("Johns Inc and Sons", json!(["equipment.changed"]), "Active");
    webhook("Johns Inc and Sons", json!(["ticket.created"]), "Active");
    webhook(
        "Johns Inc and Sons",
        json!(["equipment.created"]),
        "Stopped",
    );
    webhook("Ticket System Integration", json!(["ticket.*"]), "Active");

    let sample = write(dir.path(), "get-all.json", GET_ALL_WEBHOOKS);
    let list = |file: &str, extra: &[&str]| {
        let mut args = vec![
            "subscriptions",
            "list",
            "--format",
            "superoffice",
            "--file",
            file,
        ];
        args.extend_from_slice(extra);
        store.json(&args)
    };
    // The sample's filters together: the name, an event containing "qui", Active.
    let found = list(&sample, &[]);
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["WebhookId"], 1);
    assert_eq!(found[0]["Events"], json!(["equipment.changed"]));
    assert_eq!(found[0]["Secret"], "<redacted>", "secrets stay hidden");
    // An event name finds the patterns that match it; `$select` nulls the other properties.
    let by_event = write(
        dir.path(),
        "event.json",
        r#"{"EventFilter": "ticket.changed"}"#,
    );
    let found = list(&by_event, &["--select", "Name,WebhookId"]);
    assert_eq!(
        found,
        json!([{"WebhookId": 4, "Name": "Ticket System Integration", "Events": null,
            "TargetUrl": null, "Secret": null, "State": null, "Type": null, "Headers": null,
            "Properties": null, "Registered": null, "RegisteredAssociate": null,
            "Updated": null, "UpdatedAssociate": null, "ErrorsEmail": null}])
    );
    let stopped = write(dir.path(), "stopped.json", r#"{"StatusFilter": "Stopped"}"#);
    assert_eq!(list(&stopped, &[])[0]["WebhookId"], 3);
    // Empty filters filter nothing; the command line's options narrow it further.
    let everything = write(
        dir.path(),
        "all.json",
        r#"{"NameFilter": "", "StatusFilter": "Unknown"}"#,
    );
    assert_eq!(list(&everything, &[]).as_array().map(Vec::len), Some(4));
    assert_eq!(
        list(&everything, &["--state", "stopped"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let bad = write(dir.path(), "bad.json", r#"{"StatusFilter": "Sleeping"}"#);
    let line = store.fails(
        &[
            "subscriptions",
            "list",
            "--format",
            "superoffice",
            "--file",
            &bad,
        ],
        2,
    );
    assert!(line.contains("StatusFilter"), "{line}");
    let typo = write(dir.path(), "typo.json", r#"{"NameFiltr": "x"}"#);
    let line = store.fails(
        &[
            "subscriptions",
            "list",
            "--format",
            "superoffice",
            "--file",
            &typo,
        ],
        2,
    );
    assert!(line.contains("NameFilter"), "{line}");
    let line = store.fails(&["subscriptions", "list", "--file", &sample], 2);
    assert!(line.contains("--format superoffice"), "{line}");
}

#[test]
fn the_pipeliner_space_and_application_come_from_the_command_line() {
    let receiver = Receiver::start(|_, _| Reply::status(200));
    let store = Store::new();
    let webhook = json!({
        "url": format!("{}/pipeliner", receiver.url),
        "events": ["Account.Update"],
        "insecure_ssl": false,
        "options": {},
        "signature": "01234567-abcd-dcba-ffff-000000000000"
    });
    store.ok(&[
        "subscriptions",
        "create",
        "--format",
        "pipeliner",
        &webhook.to_string(),
    ]);
    let event = r#"{"entity":"Account","action":"updated","id":"2c5e7a9b-3d4f-4a1b-8c6d-0e2f4a6b8c0d","data":{"name":"Acme"}}"#;
    // Bodies are made at publish: that is where the space is given.
    store.ok(&[
        "--pipeliner-space-id",
        "12345",
        "--pipeliner-application-id",
        "4a6c8e0f-1b3d-4f5a-8c7e-9d0b2a4c6e8f",
        "publish",
        event,
    ]);
    // And from the environment.
    let ran = store
        .command(&["publish", event])
        .env("CALLOUT_PIPELINER_SPACE_ID", "67890")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");
    store.ok(&[
        "run",
        "--until-empty",
        "--allow",
        "127.0.0.1",
        "--timeout",
        "30s",
    ]);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    let spaces: Vec<&serde_json::Value> = bodies.iter().map(|b| &b[0]["team_space_id"]).collect();
    assert!(
        spaces.contains(&&json!("12345")) && spaces.contains(&&json!("67890")),
        "{spaces:?}"
    );
    let with_app = bodies
        .iter()
        .find(|b| b[0]["team_space_id"] == "12345")
        .unwrap();
    assert_eq!(
        with_app[0]["webhook"]["application_id"],
        "4a6c8e0f-1b3d-4f5a-8c7e-9d0b2a4c6e8f"
    );
    assert_eq!(with_app[0]["webhook"]["client_id"], json!(null));
}
