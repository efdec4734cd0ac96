//! The vendor profiles: PROFILES.md's body vectors byte for byte, the seeds' sample requests
//! parsed, rendered back and re-parsed, and bad definitions refused in the vendor's terms.

use callout_core::vendor::autotask::{self, PersonIdCasing};
use callout_core::vendor::pipeliner::{self, PipelinerContext};
use callout_core::vendor::superoffice::{self, StateChange, WebhookFilter};
use callout_core::{CompiledSubscription, Event, Kind, Profile, State, Subscription, VendorError};
use serde_json::json;

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

// ---- bodies -------------------------------------------------------------------------------

#[test]
fn autotask_vector_body_is_reproduced_byte_for_byte() {
    let mut sub = Subscription::new("https://receiver.example/autotask")
        .profile(Profile::Autotask)
        .events(["Ticket.Update"])
        .on_field_change("Ticket", ["Title", "Priority"])
        .always_fields("Ticket", ["Status"]);
    sub.guid = "d0046a73-76a0-41c4-a634-4b7fce7e43ec".into();
    let sub = CompiledSubscription::compile(sub).unwrap();
    let event = Event::updated("Ticket", "351182")
        .data(json!({"Title": "Printer & scanner down – Café", "Status": "5", "Priority": 2}))
        .previous(json!({"Title": "Printer down", "Status": "5", "Priority": 2}))
        .actor("30691780")
        .occurred_at(1_757_949_000_000);
    let body = autotask::callout_body(&sub, &event, 2, PersonIdCasing::default());
    assert_eq!(
        text(body),
        r#"{"Action":"Update","Guid":"d0046a73-76a0-41c4-a634-4b7fce7e43ec","EntityType":"Ticket","Id":351182,"Fields":{"Title":"Printer \u0026 scanner down \u2013 Caf\u00E9","Status":"5"},"EventTime":"2025-09-15T15:10:00Z","SequenceNumber":2,"PersonID":30691780}"#
    );
}

#[test]
fn autotask_body_variants() {
    let mut sub = Subscription::new("https://receiver.example/autotask")
        .profile(Profile::Autotask)
        .events(["Company.*"])
        .on_field_change("Company", ["Name"])
        .always_fields("Company", ["ExternalID"]);
    sub.guid = "g".into();
    let sub = CompiledSubscription::compile(sub).unwrap();
    // Create: the subscribed fields the record has and the display-always ones, no other
    // field; legacy EntityType; string ids; no actor.
    let created = Event::created("Company", "A-7")
        .data(json!({"Phone": "1", "ExternalID": "X-7", "Name": "<Acme>"}));
    assert_eq!(
        text(autotask::callout_body(
            &sub,
            &created,
            1,
            PersonIdCasing::PersonId
        )),
        r#"{"Action":"Create","Guid":"g","EntityType":"Account","Id":"A-7","Fields":{"Name":"\u003CAcme\u003E","ExternalID":"X-7"},"EventTime":"1970-01-01T00:00:00Z","SequenceNumber":1,"PersonId":null}"#
    );
    // Update: only the subscribed fields that changed, then the display-always ones.
    let updated = Event::updated("Company", "7")
        .data(json!({"Phone": "2", "ExternalID": "X-7", "Name": "Acme"}))
        .previous(json!({"Phone": "1", "ExternalID": "X-7", "Name": "Acme"}));
    let body = text(autotask::callout_body(
        &sub,
        &updated,
        2,
        PersonIdCasing::default(),
    ));
    assert!(body.contains(r#""Fields":{"ExternalID":"X-7"}"#), "{body}");
    // Delete: nothing changed; the display-always fields cross-reference the record.
    let gone = Event::deleted("Company", "7").data(json!({"ExternalID": "X-7", "Name": "A"}));
    let body = text(autotask::callout_body(
        &sub,
        &gone,
        3,
        PersonIdCasing::default(),
    ));
    assert!(body.contains(r#""Fields":{"ExternalID":"X-7"}"#), "{body}");
    let deleted = Event::deleted("ConfigurationItem", "9").data(json!({"Name": "x"}));
    let body = text(autotask::callout_body(
        &sub,
        &deleted,
        3,
        PersonIdCasing::default(),
    ));
    assert!(body.starts_with(
        r#"{"Action":"Delete","Guid":"g","EntityType":"InstalledProduct","Id":9,"Fields":{},"#
    ));
    let mut plain = Subscription::new("https://r.example/").events(["Contact.Update"]);
    plain.id = 12;
    plain.guid = "g2".into();
    assert_eq!(
        text(autotask::deactivation_body(
            &plain,
            4,
            1_757_949_000_000,
            Some("5"),
            PersonIdCasing::default()
        )),
        r#"{"Action":"Deactivated","Guid":"g2","EntityType":"Contact","Id":12,"Fields":{},"EventTime":"2025-09-15T15:10:00Z","SequenceNumber":4,"PersonID":5}"#
    );
}

#[test]
fn dotnet_escaping_matches_the_default_encoder() {
    assert_eq!(
        autotask::json_string(r#"&<>'"`+"#),
        r#""\u0026\u003C\u003E\u0027\u0022\u0060\u002B""#
    );
    assert_eq!(autotask::json_string("é"), r#""\u00E9""#);
    assert_eq!(autotask::json_string("x😀y"), r#""x\uD83D\uDE00y""#);
    assert_eq!(
        autotask::json_string("a\u{0}\n\t\r\u{1b}\\"),
        r#""a\u0000\n\t\r\u001B\\""#
    );
    assert_eq!(
        autotask::json_string("plain text/123"),
        r#""plain text/123""#
    );
}

#[test]
fn superoffice_vector_body_is_reproduced_byte_for_byte() {
    let sub = Subscription::new("https://receiver.example/so")
        .name("Tonys Contact Handler")
        .profile(Profile::Superoffice)
        .events(["contact.changed"]);
    let sub = CompiledSubscription::compile(sub).unwrap();
    let event = Event::updated("contact", "18")
        .changed([
            "contact_id",
            "updated_associate_id",
            "soundEx",
            "updated",
            "name",
        ])
        .tenant("Cust54321")
        .actor("5");
    let body = superoffice::callout_body(
        &sub,
        &event,
        "88f91933-edce-4c1a-8ded-ade8e2f72434",
        15_229_168_815_732_501,
    );
    assert_eq!(
        text(body),
        r#"{"EventId":"88f91933-edce-4c1a-8ded-ade8e2f72434","Timestamp":"2018-04-05T08:28:01.5732501Z","Changes":["contact_id","updated_associate_id","soundEx","updated","name"],"Event":"contact.changed","PrimaryKey":18,"Entity":"contact","ContextIdentifier":"Cust54321","ChangedByAssociateId":5,"WebhookName":"Tonys Contact Handler"}"#
    );
}

#[test]
fn superoffice_field_values_properties_and_special_events() {
    let sub = Subscription::new("https://receiver.example/so")
        .name("h")
        .profile(Profile::Superoffice)
        .events(["sale.*"])
        .always_fields("sale", ["amount"])
        .property("Tag", json!("x"))
        .property("Event", json!("never shadows"))
        .header("X-Custom", "1");
    let compiled = CompiledSubscription::compile(sub.clone()).unwrap();
    let changed = Event::updated("Sale", "3")
        .data(json!({"amount": 10, "secret": "s"}))
        .changed(["amount"]);
    assert_eq!(
        text(superoffice::callout_body(&compiled, &changed, "e1", 0)),
        r#"{"EventId":"e1","Timestamp":"1970-01-01T00:00:00.0000000Z","Changes":["amount"],"Event":"sale.changed","PrimaryKey":3,"Entity":"sale","ContextIdentifier":null,"ChangedByAssociateId":0,"WebhookName":"h","FieldValues":{"amount":10},"Tag":"x"}"#
    );
    let deleted = Event::deleted("sale", "3").data(json!({"amount": 10}));
    assert!(text(superoffice::callout_body(&compiled, &deleted, "e2", 0))
        .contains(r#""Event":"sale.deleted","PrimaryKey":3,"Entity":"sale","ContextIdentifier":null,"ChangedByAssociateId":0,"WebhookName":"h","Values":{"amount":10},"Tag":"x"}"#));
    assert!(text(superoffice::test_body(&sub, "e3", 0)).contains(
        r#""Changes":[],"Event":"test","PrimaryKey":0,"Entity":"test","ContextIdentifier":null"#
    ));
    assert!(text(superoffice::state_body(
        &sub,
        7,
        StateChange::Errors,
        "e4",
        0
    ))
    .contains(r#""Event":"webhook.errors","PrimaryKey":7,"Entity":"webhook""#));
    assert_eq!(
        StateChange::entering(State::Stopped).event_for(7),
        "webhook7.stopped"
    );
    assert_eq!(
        superoffice::headers(&sub, "sale.changed", "e1", 2, true),
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-SuperOffice-Event", "sale.changed"),
            ("X-SuperOffice-EventId", "e1"),
            ("X-SuperOffice-Retry", "2"),
            ("X-Hook-Test", "true"),
            ("X-Custom", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

fn pipeliner_vector_subscription() -> Subscription {
    let mut sub = Subscription::new("https://example.com/pipeliner")
        .profile(Profile::Pipeliner)
        .events(["Account.*"])
        .secret("01234567-abcd-dcba-ffff-000000000000");
    sub.guid = "9f1c2b7e-0d4a-4c8e-9b7a-2f6d1e3c4a5b".into();
    sub.created_at = Some(1_704_067_200_000);
    sub
}

#[test]
fn pipeliner_vector_body_is_reproduced_byte_for_byte() {
    let sub = CompiledSubscription::compile(pipeliner_vector_subscription()).unwrap();
    let context = PipelinerContext {
        team_space_id: "12345".into(),
        application_id: Some("4a6c8e0f-1b3d-4f5a-8c7e-9d0b2a4c6e8f".into()),
        client_id: None,
    };
    let event = Event::updated("Account", "2c5e7a9b-3d4f-4a1b-8c6d-0e2f4a6b8c0d")
        .data(json!({"name": "Acme"}))
        .occurred_at(1_704_189_600_000);
    assert_eq!(
        text(pipeliner::chunk_body(&sub, &[event], &context)),
        r#"[{"webhook":{"id":"9f1c2b7e-0d4a-4c8e-9b7a-2f6d1e3c4a5b","insecure_ssl":false,"options":{},"url":"https://example.com/pipeliner","is_deleted":false,"created":"2024-01-01T00:00:00Z","modified":"2024-01-01T00:00:00Z","application_id":"4a6c8e0f-1b3d-4f5a-8c7e-9d0b2a4c6e8f","client_id":null,"events":["Account.*"]},"event":"Account.Update","event_time":"2024-01-02T10:00:00Z","team_space_id":"12345","related_entity":null,"entity":{"id":"2c5e7a9b-3d4f-4a1b-8c6d-0e2f4a6b8c0d","name":"Acme"}}]"#
    );
}

#[test]
fn pipeliner_body_trims_with_load_only_and_carries_related_records() {
    let mut sub = pipeliner_vector_subscription()
        .load_only("Account", ["name"])
        .chunk_size(10);
    sub.related.load_only = vec!["title".into()];
    let sub = CompiledSubscription::compile(sub).unwrap();
    let event = Event::new("Account", "DocumentLinked", "a1")
        .data(json!({"name": "Acme", "owner": "/entities/Clients/u1", "phone": "1"}))
        .related("CloudObject", "d1", json!({"title": "T", "size": 3}));
    let body = text(pipeliner::chunk_body(
        &sub,
        &[event.clone(), event],
        &PipelinerContext::default(),
    ));
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 2);
    assert_eq!(parsed[0]["event"], "Account.DocumentLinked");
    assert_eq!(parsed[0]["entity"], json!({"id": "a1", "name": "Acme"}));
    assert_eq!(
        parsed[0]["related_entity"],
        json!({"id": "d1", "title": "T"})
    );
    assert_eq!(
        parsed[0]["webhook"]["options"],
        json!({"entity": {"Account": {"load-only": ["name"]}}, "related_entity": {"load-only": ["title"]}, "chunk_size": 10})
    );
    assert!(
        !body.contains("01234567-abcd"),
        "the signature is never echoed"
    );
    assert_eq!(
        pipeliner::event_name(&Event::new("sales_unit", "won", "1")),
        "SalesUnit.Won"
    );
}

// ---- registration: Autotask ---------------------------------------------------------------

const AUTOTASK_REST_SAMPLE: &str = r#"{
"IsActive": true,
"DeactivationUrl": "https://wrkhbq676nwh8.d.samplecompany.net",
"IsSubscribedToUpdateEvents": true,
"Name": "myintegration.Accounts.Modify",
"SecretKey": "12345678",
"SendThresholdExceededNotification": false,
"WebhookUrl": "https://wrkhbq676nwh8.d.samplecompany.net"
}"#;

const AUTOTASK_SOAP_SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
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

fn field(result: Result<Subscription, VendorError>) -> String {
    result.expect_err("should be refused").field
}

#[test]
fn autotask_rest_sample_parses_renders_and_round_trips() {
    let sub = autotask::parse_rest(AUTOTASK_REST_SAMPLE, "Company").unwrap();
    assert_eq!(sub.profile, Profile::Autotask);
    assert_eq!(sub.events, ["account.updated"]);
    assert_eq!(sub.name, "myintegration.Accounts.Modify");
    assert_eq!(sub.secrets[0].expose(), "12345678");
    assert_eq!(sub.state, State::Active);
    assert_eq!(sub.validate(), Ok(()));
    assert!(!autotask::is_ready(&sub), "no subscribed field yet");
    let rendered = autotask::render_rest(&sub);
    assert_eq!(rendered["IsSubscribedToUpdateEvents"], true);
    assert_eq!(rendered["IsReady"], false);
    let back = autotask::parse_rest(&rendered.to_string(), "Account").unwrap();
    assert_eq!(back, sub);
}

#[test]
fn autotask_child_collections_map_to_fields_udfs_and_excluded_resources() {
    let doc = r#"{"id": 4, "WebhookGUID": "d0046a73", "IsActive": false, "Name": "n",
        "WebhookUrl": "https://r.example/at", "IsSubscribedToCreateEvents": true,
        "IsSubscribedToUpdateEvents": true, "OwnerResourceID": 29682885,
        "NotificationEmailAddress": "ops@example.com",
        "Fields": [{"FieldName": "Status", "IsDisplayAlwaysField": true},
                   {"FieldID": 12, "IsSubscribedField": true, "IsDisplayAlwaysField": false},
                   {"FieldName": "Title", "IsSubscribedField": true, "IsDisplayAlwaysField": true}],
        "UdfFields": [{"UdfFieldName": "Region", "IsSubscribedField": true}],
        "ExcludedResources": [{"ResourceID": 30691780}]}"#;
    let sub = autotask::parse_rest(doc, "Ticket").unwrap();
    let options = &sub.entities["Ticket"];
    assert_eq!(
        options.on_field_change,
        ["12", "Title", "UserDefinedFields.Region"]
    );
    assert_eq!(options.always_fields, ["Status", "Title"]);
    assert_eq!(sub.excluded_actors, ["30691780"]);
    assert_eq!(sub.state, State::Stopped);
    assert_eq!(sub.owner.as_deref(), Some("29682885"));
    assert!(autotask::is_ready(&sub));
    let back = autotask::parse_rest(&autotask::render_rest(&sub).to_string(), "Ticket").unwrap();
    assert_eq!(back, sub);
}

#[test]
fn autotask_soap_sample_parses_and_round_trips_through_both_shapes() {
    let sub = autotask::parse_soap(AUTOTASK_SOAP_SAMPLE).unwrap();
    assert_eq!(sub.events, ["account.updated"]);
    assert_eq!(sub.name, "Angela.Accounts.Modify");
    assert_eq!(sub.target_url, "https://enymf79yfhr0d.x.pipedream.net");
    assert_eq!(
        sub.deactivation_url.as_deref(),
        Some("https://enkmoj676nwh8.x.pipedream.net")
    );
    assert_eq!(sub.secrets[0].expose(), "20201");
    let xml = autotask::render_soap(&sub).unwrap();
    assert!(xml.starts_with(r#"<Entity xsi:type="AccountWebhook""#));
    assert_eq!(autotask::parse_soap(&xml).unwrap(), sub);
    let rest = autotask::render_rest(&sub).to_string();
    assert_eq!(autotask::parse_rest(&rest, "Company").unwrap(), sub);
    let escaped = autotask::parse_soap(
        r#"<Entity xsi:type="TicketNoteWebhook"><IsSubscribedToCreateEvents>1</IsSubscribedToCreateEvents><Name>A &amp; B&#x21;</Name><WebhookUrl>https://r.example/</WebhookUrl></Entity>"#,
    )
    .unwrap();
    assert_eq!(escaped.name, "A & B!");
    assert_eq!(escaped.events, ["ticketnote.created"]);
    assert_eq!(
        autotask::parse_soap(&autotask::render_soap(&escaped).unwrap()).unwrap(),
        escaped
    );
}

#[test]
fn autotask_bad_definitions_name_the_autotask_field() {
    let with = |key: &str, value: serde_json::Value| {
        let mut doc: serde_json::Value = serde_json::from_str(AUTOTASK_REST_SAMPLE).unwrap();
        doc[key] = value;
        autotask::parse_rest(&doc.to_string(), "Contact")
    };
    assert_eq!(field(with("WebhookUrl", json!(null))), "WebhookUrl");
    assert_eq!(field(with("WebhookUrl", json!("not a url"))), "WebhookUrl");
    assert_eq!(
        field(with("DeactivationUrl", json!("ftp://x"))),
        "DeactivationUrl"
    );
    assert_eq!(field(with("Name", json!("n".repeat(51)))), "Name");
    let long_key = with("SecretKey", json!("k".repeat(65))).unwrap_err();
    assert_eq!(long_key.field, "SecretKey");
    assert!(long_key.to_string().contains("65 characters"), "{long_key}");
    assert!(with("SecretKey", json!("k".repeat(64))).is_ok());
    assert_eq!(field(with("IsActive", json!("maybe"))), "IsActive");
    assert_eq!(
        field(with("IsSubscribedToUpdateEvents", json!(false))),
        "IsSubscribedTo*Events"
    );
    assert_eq!(
        field(with("NotificationEmailAddress", json!("e".repeat(151)))),
        "NotificationEmailAddress"
    );
    assert_eq!(
        field(with("Fields", json!([{"IsSubscribedField": true}]))),
        "Fields[0].FieldID"
    );
    assert_eq!(
        field(autotask::parse_rest(AUTOTASK_REST_SAMPLE, "Opportunity")),
        "Entity"
    );
    assert_eq!(field(autotask::parse_rest("{", "Contact")), "");
    for (xml, expected) in [
        (
            "<Entity xsi:type=\"AccountWebhook\"><Name>x</Nam></Entity>",
            "Name",
        ),
        (
            "<Entity xsi:type=\"AccountWebhook\"><Name>x</Name>",
            "Entity",
        ),
        (
            "<Entity xsi:type=\"OpportunityWebhook\"></Entity>",
            "xsi:type",
        ),
        ("<Entity><Name>x</Name></Entity>", "xsi:type"),
        ("<Other/>", "Entity"),
        (
            "<Entity xsi:type=\"AccountWebhook\"><Name>a &bogus; b</Name></Entity>",
            "Name",
        ),
    ] {
        assert_eq!(field(autotask::parse_soap(xml)), expected, "{xml}");
    }
}

#[test]
fn autotask_duplicates_share_entity_url_and_a_callout_type() {
    let at = |id: u64, entity: &str, url: &str, update: bool, delete: bool| {
        let doc = json!({"Name": "n", "WebhookUrl": url, "IsSubscribedToUpdateEvents": update,
                         "IsSubscribedToDeleteEvents": delete, "id": id});
        autotask::parse_rest(&doc.to_string(), entity).unwrap()
    };
    let existing = [
        at(1, "Company", "https://a.example/", true, false),
        at(2, "Contact", "https://b.example/", false, true),
    ];
    let dup = autotask::find_duplicate(
        &at(0, "Account", "https://a.example/", true, true),
        &existing,
    );
    assert_eq!(dup.map(|s| s.id), Some(1));
    assert!(autotask::find_duplicate(
        &at(0, "Account", "https://a.example/", false, true),
        &existing
    )
    .is_none());
    assert!(autotask::find_duplicate(
        &at(0, "Ticket", "https://a.example/", true, false),
        &existing
    )
    .is_none());
    assert!(autotask::find_duplicate(
        &at(0, "Contact", "https://c.example/", false, true),
        &existing
    )
    .is_none());
    assert!(
        autotask::find_duplicate(&existing[0], &existing).is_none(),
        "not its own duplicate"
    );
}

// ---- registration: SuperOffice ------------------------------------------------------------

const SUPEROFFICE_GET_ALL_RESPONSE: &str = r#"[
{
"WebhookId": 3,
"Name": "Ticket System Integration",
"Events": [
"ticket.created",
"ticket.changed"
],
"TargetUrl": "https://support.example.com/api/webhooks/tickets",
"Secret": "sk_live_a1b2c3d4e5f6g7h8i9j0",
"State": "Active",
"Type": "webhook",
"Headers": {
"X-Service-Key": "support_integration_v2",
"X-Webhook-Version": "1.0"
},
"Properties": {
"fieldName": {}
},
"Registered": "2024-06-10T08:30:00+02:00",
"RegisteredAssociate": null,
"Updated": "2024-11-28T09:45:00+01:00",
"UpdatedAssociate": null,
"ErrorsEmail": "support-admin@example.com"
}
]"#;

const SUPEROFFICE_POST_SAMPLE: &str = r#"{
"WebhookId": 983,
"Name": "Blick-Schroeder",
"Events": [
"nostrum",
"nihil"
],
"TargetUrl": "http://www.example.com/",
"Secret": "neque",
"State": "Active",
"Type": "ratione",
"Headers": {
"Headers1": "nam",
"Headers2": "rerum"
},
"Properties": {
"fieldName": {}
},
"Registered": "2024-04-18T14:34:02.9242705+02:00",
"RegisteredAssociate": null,
"Updated": "2019-12-19T14:34:02.9242705+01:00",
"UpdatedAssociate": null,
"ErrorsEmail": "zelda@farrell.biz"
}"#;

const SUPEROFFICE_GET_ALL_REQUEST: &str = r#"{
"NameFilter": "Johns Inc and Sons",
"EventFilter": "qui",
"StatusFilter": "Active"
}"#;

fn superoffice_sample() -> Subscription {
    let list: serde_json::Value = serde_json::from_str(SUPEROFFICE_GET_ALL_RESPONSE).unwrap();
    superoffice::parse_webhook_value(&list[0]).unwrap()
}

#[test]
fn superoffice_get_all_sample_parses_renders_and_round_trips() {
    let sub = superoffice_sample();
    assert_eq!(sub.id, 3);
    assert_eq!(sub.profile, Profile::Superoffice);
    assert_eq!(sub.events, ["ticket.created", "ticket.changed"]);
    assert_eq!(sub.kind, Kind::Webhook);
    assert_eq!(sub.headers.len(), 2);
    assert_eq!(sub.properties["fieldName"], json!({}));
    assert_eq!(sub.created_at, Some(1_718_001_000_000));
    assert_eq!(
        sub.errors_email.as_deref(),
        Some("support-admin@example.com")
    );
    let rendered = superoffice::render_webhook(&sub);
    assert_eq!(rendered["State"], "Active");
    assert_eq!(rendered["Registered"], "2024-06-10T06:30:00.0000000Z");
    assert_eq!(
        superoffice::parse_webhook(&rendered.to_string()).unwrap(),
        sub
    );
}

#[test]
fn superoffice_post_sample_is_refused_for_its_placeholder_values_then_accepted() {
    // The documented sample is generated filler: `Type` "ratione" is no plugin and the events
    // are not `entity.verb`. Each is refused under its own name.
    assert_eq!(
        field(superoffice::parse_webhook(SUPEROFFICE_POST_SAMPLE)),
        "Type"
    );
    let typed = SUPEROFFICE_POST_SAMPLE.replace(r#""ratione""#, r#""webhook""#);
    assert_eq!(field(superoffice::parse_webhook(&typed)), "Events");
    let fixed = typed
        .replace(r#""nostrum""#, r#""contact.created""#)
        .replace(r#""nihil""#, r#""sale.changed""#);
    let sub = superoffice::parse_webhook(&fixed).unwrap();
    assert_eq!(sub.id, 983);
    assert_eq!(sub.created_at, Some(1_713_443_642_924));
    let back = superoffice::parse_webhook(&superoffice::render_webhook(&sub).to_string()).unwrap();
    assert_eq!(back, sub);
    // crmscript runs the host's handler named by TargetUrl; State may be a number.
    let script = fixed
        .replace(r#""webhook""#, r#""crmscript""#)
        .replace(r#""http://www.example.com/""#, r#""onContactCreated""#)
        .replace(r#""State": "Active""#, r#""State": 2"#);
    let sub = superoffice::parse_webhook(&script).unwrap();
    assert_eq!(sub.kind, Kind::Handler("onContactCreated".into()));
    assert_eq!(sub.state, State::Stopped);
    assert_eq!(superoffice::render_webhook(&sub)["Type"], "crmscript");
    assert_eq!(
        superoffice::parse_webhook(&superoffice::render_webhook(&sub).to_string()).unwrap(),
        sub
    );
}

#[test]
fn superoffice_bad_definitions_name_the_superoffice_field() {
    let sample = superoffice::render_webhook(&superoffice_sample());
    let with = |key: &str, value: serde_json::Value| {
        let mut doc = sample.clone();
        doc[key] = value;
        superoffice::parse_webhook(&doc.to_string())
    };
    assert_eq!(field(with("State", json!("Paused"))), "State");
    assert_eq!(field(with("State", json!(4))), "State");
    assert_eq!(
        with("State", json!("TooManyErrors")).unwrap().state,
        State::TooManyErrors
    );
    assert_eq!(field(with("TargetUrl", json!("ftp://x"))), "TargetUrl");
    assert_eq!(field(with("TargetUrl", json!(null))), "TargetUrl");
    assert_eq!(field(with("Events", json!([]))), "Events");
    assert_eq!(
        field(with("Headers", json!({"Content-Type": "x"}))),
        "Headers.Content-Type"
    );
    assert_eq!(field(with("Headers", json!({"X-N": 1}))), "Headers.X-N");
    assert_eq!(field(with("Registered", json!("yesterday"))), "Registered");
    assert_eq!(field(with("Name", json!("n".repeat(51)))), "Name");
}

#[test]
fn superoffice_get_all_webhooks_filters_and_select_projects() {
    let base = superoffice_sample();
    let mut stopped = base.clone();
    stopped.id = 4;
    stopped.name = "Johns Inc and Sons sync".into();
    stopped.events = vec!["sale.*".into()];
    stopped.state = State::Stopped;
    let subs = [base, stopped];
    let ids = |filter: &WebhookFilter| -> Vec<u64> {
        superoffice::get_all_webhooks(&subs, filter)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect()
    };
    let sample = WebhookFilter::parse(SUPEROFFICE_GET_ALL_REQUEST).unwrap();
    assert_eq!(ids(&sample), Vec::<u64>::new());
    assert_eq!(ids(&WebhookFilter::default()), [3, 4]);
    let filter = |name: &str, event: &str, status: &str| WebhookFilter {
        name_filter: name.into(),
        event_filter: event.into(),
        status_filter: status.into(),
    };
    assert_eq!(ids(&filter("johns", "", "Unknown")), [4]);
    assert_eq!(ids(&filter("", "TICKET", "")), [3]);
    assert_eq!(
        ids(&filter("", "sale.changed", "")),
        [4],
        "patterns match vendor spellings"
    );
    assert_eq!(ids(&filter("", "", "2")), [4]);
    assert_eq!(ids(&filter("", "", "Active")), [3]);
    let bad = superoffice::get_all_webhooks(&subs, &filter("", "", "Sleeping")).unwrap_err();
    assert_eq!(bad.field, "StatusFilter");
    let listed = serde_json::Value::Array(subs.iter().map(superoffice::render_webhook).collect());
    let selected = superoffice::select(&listed, "name,WEBHOOKID, headers/x-webhook-version");
    assert_eq!(selected[0]["Name"], "Ticket System Integration");
    assert_eq!(selected[0]["WebhookId"], 3);
    assert_eq!(selected[0]["Secret"], json!(null));
    assert_eq!(
        selected[0]["Headers"],
        json!({"X-Service-Key": null, "X-Webhook-Version": "1.0"})
    );
    assert_eq!(superoffice::select(&listed, " "), listed);
}

// ---- registration: Pipeliner --------------------------------------------------------------

/// The options example of `pipeliner-webhooks.txt`, verbatim: one line, with its comments.
const PIPELINER_OPTIONS_EXAMPLE: &str = r#"{ "entity": { "Contact": { "expand": [ "primary_account", "primary_contact", "task_relations.task" ], "load-only": [ "id", "primary_account", "primary_contact.first_name", "task_relations.task" ], "filter": { "email1": ["[email protected]", "[email protected]"], "email2": "[email protected]" }, "filter-op": {"email1": "eq"}, # optional, default operator is eq "on-field-change": ["email1"] }, "Account": { "filter": { "owner_id": ["9900cce6-bcd6-412a-bcd1-1904556c949a"] } } }, "related_entity": {"expand": ["contact"], "load-only": ["id", "contact"]}, "skip_keys": ["gmail_sync", "custom_integration"], "chunk_size": 100, // defines the size of the chunk, default is 100, max is 100. "chunk_delay": 300 // each chunk will be delayed by N * chunk_delay seconds, where N is index of chunk, default is 0. }"#;

fn pipeliner_webhook(options: &str) -> String {
    format!(
        r#"{{"url": "https://example.com/pipeliner", "events": ["Contact.Update", "Account.*"],
            "insecure_ssl": false, "signature": "01234567-abcd-dcba-ffff-000000000000",
            "created": "2019-01-01T00:00:00", "options": {options}}}"#
    )
}

#[test]
fn pipeliner_seed_options_with_comments_parse_render_and_round_trip() {
    let sub = pipeliner::parse_webhook(&pipeliner_webhook(PIPELINER_OPTIONS_EXAMPLE)).unwrap();
    assert_eq!(sub.profile, Profile::Pipeliner);
    let contact = &sub.entities["Contact"];
    assert_eq!(contact.on_field_change, ["email1"]);
    assert_eq!(
        contact.expand,
        ["primary_account", "primary_contact", "task_relations.task"]
    );
    assert_eq!(contact.load_only.len(), 4);
    assert_eq!(contact.filters.len(), 2);
    assert!(contact.filters.iter().all(|f| f.op == "eq"));
    assert_eq!(sub.entities["Account"].filters[0].path, "owner_id");
    assert_eq!(sub.related.expand, ["contact"]);
    assert_eq!(sub.skip_keys, ["gmail_sync", "custom_integration"]);
    assert_eq!((sub.chunk_size, sub.chunk_delay), (Some(100), 300));
    assert_eq!(sub.created_at, Some(1_546_300_800_000));
    let rendered = pipeliner::render_webhook(&sub);
    assert_eq!(rendered["options"]["chunk_delay"], 300);
    assert_eq!(
        pipeliner::parse_webhook(&rendered.to_string()).unwrap(),
        sub
    );
    // The same example with its line breaks: comments end at the line's end.
    let multi_line = PIPELINER_OPTIONS_EXAMPLE
        .replace("# optional", "# optional \"eq\" {x}")
        .replace("is eq \"on", "is eq\n\"on")
        .replace("100. \"chunk", "100.\n\"chunk")
        .replace("is 0. }", "is 0.\n}");
    assert_eq!(
        pipeliner::parse_webhook(&pipeliner_webhook(&multi_line)).unwrap(),
        sub
    );
}

#[test]
fn pipeliner_custom_entity_api_name_and_operators() {
    let doc = r#"{"url": "https://r.example/p", "events": ["CustomEntity.*"],
        "custom_entity_api_name": "Project_Custom",
        "options": {"entity": {"CustomEntity": {"filter": {"budget": [10, 20]}, "filter-op": {"budget": "between"}}}}}"#;
    let sub = pipeliner::parse_webhook(doc).unwrap();
    assert_eq!(sub.entities["CustomEntity"].filters.len(), 2);
    let rendered = pipeliner::render_webhook(&sub);
    assert_eq!(rendered["custom_entity_api_name"], "Project_Custom");
    assert_eq!(
        rendered["options"],
        json!({"entity": {"CustomEntity": {"filter": {"budget": [10, 20]}, "filter-op": {"budget": "between"}}}})
    );
    assert_eq!(
        pipeliner::parse_webhook(&rendered.to_string()).unwrap(),
        sub
    );
}

#[test]
fn pipeliner_bad_definitions_name_the_pipeliner_field() {
    let with_options = |options: &str| pipeliner::parse_webhook(&pipeliner_webhook(options));
    assert_eq!(
        field(with_options(r#"{"chunk_size": 101}"#)),
        "options.chunk_size"
    );
    assert_eq!(
        field(with_options(r#"{"chunk_size": 0}"#)),
        "options.chunk_size"
    );
    assert!(with_options(r#"{"chunk_size": 100}"#).is_ok());
    assert_eq!(
        field(with_options(r#"{"chunk_delay": -1}"#)),
        "options.chunk_delay"
    );
    assert_eq!(field(with_options(r#"{"chunks": 1}"#)), "options.chunks");
    assert_eq!(
        field(with_options(
            r#"{"entity": {"Contact": {"filter": {"a": 1}, "filter-op": {"a": "approx"}}}}"#
        )),
        "options.entity.Contact.filter-op.a"
    );
    assert_eq!(
        field(with_options(
            r#"{"entity": {"Contact": {"filter-op": {"a": "eq"}}}}"#
        )),
        "options.entity.Contact.filter-op.a"
    );
    assert_eq!(
        field(with_options(
            r#"{"entity": {"Contact": {"filter": {"a": [1]}, "filter-op": {"a": "between"}}}}"#
        )),
        "options.entity.Contact.filter.a"
    );
    assert_eq!(
        field(with_options(
            r#"{"entity": {"Contact": {"on-field-change": ["a..b"]}}}"#
        )),
        "options.entity.Contact.on-field-change"
    );
    let with = |key: &str, value: serde_json::Value| {
        let mut doc: serde_json::Value = serde_json::from_str(&pipeliner_webhook("{}")).unwrap();
        doc[key] = value;
        pipeliner::parse_webhook(&doc.to_string())
    };
    assert_eq!(field(with("signature", json!("not-a-uuid"))), "signature");
    assert_eq!(field(with("url", json!(null))), "url");
    assert_eq!(field(with("url", json!("example.com"))), "url");
    assert_eq!(field(with("events", json!(["Contact"]))), "events");
    assert_eq!(
        field(with("insecure_ssl", json!("sometimes"))),
        "insecure_ssl"
    );
    assert_eq!(field(pipeliner::parse_webhook("{ # only a comment")), "");
}
