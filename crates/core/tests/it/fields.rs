//! Input documents refuse keys their type does not have, naming the field meant; what a
//! registrant attaches to every delivery (properties, headers) is bounded.

use callout_core::vendor::superoffice::{self, WebhookFilter};
use callout_core::vendor::{autotask, pipeliner};
use callout_core::{limits, Event, InvalidSubscription as E, Subscription, VendorError};
use serde_json::json;

fn unknown(field: &str, suggestion: Option<&str>) -> E {
    E::UnknownField {
        field: field.to_string(),
        suggestion: suggestion.map(str::to_string),
    }
}

fn refused(document: serde_json::Value) -> E {
    Subscription::from_value(document).expect_err("an unknown key was accepted")
}

#[test]
fn a_singular_secret_is_refused_naming_secrets() {
    let err = Subscription::from_json(
        r#"{"target_url": "https://r.example/", "events": ["*"], "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#,
    )
    .unwrap_err();
    assert_eq!(err, unknown("secret", Some("secrets")));
    assert_eq!(
        err.to_string(),
        r#"unknown field "secret" (did you mean "secrets"?)"#
    );
    // Case is ignored when suggesting, not when accepting: serde's keys are exact.
    assert_eq!(
        refused(json!({"Target_URL": "https://r.example/"})),
        unknown("Target_URL", Some("target_url"))
    );
    assert_eq!(
        refused(json!({"colour": "blue"})),
        unknown("colour", None),
        "nothing close, nothing suggested"
    );
    // Inside a secret with an expiry too.
    assert_eq!(
        refused(
            json!({"secrets": [{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expires": 1}]})
        ),
        unknown("secrets[0].expires", Some("expires_at"))
    );
    assert_eq!(
        refused(json!({"colour": "blue"})).to_string(),
        r#"unknown field "colour""#
    );
}

#[test]
fn unknown_nested_keys_are_refused_with_their_path() {
    assert_eq!(
        refused(json!({"entities": {"Contact": {"filtrs": []}}})),
        unknown("entities.Contact.filtrs", Some("filters"))
    );
    assert_eq!(
        refused(json!({"entities": {"Contact": {"filters": [
            {"path": "email1", "op": "eq", "value": "a"},
            {"path": "email2", "opp": "eq", "value": "b"},
        ]}}})),
        unknown("entities.Contact.filters[1].opp", Some("op"))
    );
    assert_eq!(
        refused(json!({"related": {"lod_only": ["id"]}})),
        unknown("related.lod_only", Some("load_only"))
    );
    assert_eq!(
        Subscription::check_fields(&json!({"tenantt": null})),
        Err(unknown("tenantt", Some("tenant"))),
        "a partial document (a merge patch) is checked too"
    );
}

#[test]
fn every_field_callout_writes_is_read_back() {
    let sub = Subscription::new("https://r.example/hooks")
        .name("full")
        .events(["contact.*"])
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .header("X-Service-Key", "abc")
        .property("source", json!({"any": ["shape"]}))
        .filter("Contact", "email1", "ieq", json!("a@x.com"))
        .on_field_change("Contact", ["email1"])
        .always_fields("Contact", ["id"])
        .tenant("t");
    let document = serde_json::to_string(&sub).unwrap();
    assert_eq!(Subscription::from_json(&document), Ok(sub));
}

#[test]
fn stored_json_with_a_newer_field_still_reads() {
    // The store decodes with serde directly; only input documents are strict.
    let stored = json!({"id": 3, "target_url": "https://r.example/", "events": ["*"],
        "field_of_a_newer_callout": {"x": 1}});
    let sub: Subscription = serde_json::from_value(stored).unwrap();
    assert_eq!(sub.id, 3);
}

#[test]
fn malformed_documents_are_typed_errors() {
    assert!(matches!(
        Subscription::from_json(r#"{"target_url": "#),
        Err(E::Malformed { .. })
    ));
    let err = Subscription::from_json(r#"{"chunk_size": "ten"}"#).unwrap_err();
    assert!(matches!(err, E::Malformed { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("malformed subscription JSON:"),
        "{err}"
    );
}

#[test]
fn events_refuse_unknown_keys_but_not_inside_their_records() {
    let err = Event::check_fields(&json!({"entity": "Contact", "action": "updated",
        "id": "1", "prevous": {}}))
    .unwrap_err();
    assert_eq!(err.field, "prevous");
    assert_eq!(err.suggestion.as_deref(), Some("previous"));
    let err = Event::check_fields(&json!({"entity": "Account", "action": "linked_document",
        "id": "1", "related": {"entity": "Document", "id": "9", "entiy": "x"}}))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unknown field "related.entiy" (did you mean "entity"?)"#
    );
    let host_data = json!({"entity": "Contact", "action": "updated", "id": "1",
        "data": {"anything": 1}, "previous": {"at all": 2},
        "related": {"entity": "Document", "id": "9", "data": {"x": 1}}});
    assert_eq!(Event::check_fields(&host_data), Ok(()));
}

/// The vendor's field name and the field it suggests, from a refused document.
fn vendor_unknown(result: Result<Subscription, VendorError>) -> (String, Option<String>) {
    let err = result.expect_err("an undocumented key was accepted");
    match err.source.as_deref() {
        Some(E::UnknownField { field, suggestion }) => {
            assert_eq!(field, &err.field);
            (err.field, suggestion.clone())
        }
        other => panic!("not an unknown field: {err} ({other:?})"),
    }
}

fn pair(field: &str, suggestion: &str) -> (String, Option<String>) {
    (field.to_string(), Some(suggestion.to_string()))
}

#[test]
fn superoffice_refuses_undocumented_keys_and_accepts_documented_ones() {
    let doc = |extra: serde_json::Value| {
        let mut d = json!({"Name": "n", "Events": ["contact.created"],
            "TargetUrl": "https://r.example/so"});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        d.to_string()
    };
    let err = superoffice::parse_webhook(&doc(json!({"Secrett": "s"}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"SuperOffice webhook Secrett: is not a known field (did you mean "Secret"?)"#
    );
    assert_eq!(
        vendor_unknown(superoffice::parse_webhook(&doc(
            json!({"RegisteredAssociate": {"AssociateID": 5, "Rnk": 1}})
        ))),
        pair("RegisteredAssociate.Rnk", "Rank")
    );
    // Every documented property, `_Links` of the answer and a full associate included.
    let documented = doc(json!({"WebhookId": 0, "Secret": "s", "State": "Stopped",
        "Type": "webhook", "Headers": {"X-Any-Name": "v"}, "Properties": {"any": {}},
        "Registered": "2024-06-10T08:30:00+02:00", "Updated": "2024-11-28T09:45:00+01:00",
        "RegisteredAssociate": {"AssociateId": 5, "Name": "TJE", "PersonId": 12, "Rank": 1,
            "Tooltip": "", "Type": "Employee", "GroupIdx": 2, "FullName": "T J", "FormalName": "T",
            "Deleted": false, "EjUserId": 0, "UserName": "tje", "TableRight": null,
            "FieldProperties": {}},
        "UpdatedAssociate": null, "ErrorsEmail": "a@example.com",
        "_Links": {"Self": "https://so.example/api/v1/Webhook/1"}}));
    let sub = superoffice::parse_webhook(&documented).unwrap();
    assert_eq!(sub.created_by.as_deref(), Some("5"));
    // Keys are case-insensitive, as SuperOffice's model binding is.
    assert!(superoffice::parse_webhook(&doc(json!({"secret": "s", "errorsemail": null}))).is_ok());

    let err = WebhookFilter::parse(r#"{"NameFiltr": "x"}"#).unwrap_err();
    assert_eq!(err.field, "NameFiltr");
    assert!(
        err.reason.contains(r#"did you mean "NameFilter"?"#),
        "{err}"
    );
    assert!(
        WebhookFilter::parse(r#"{"NameFilter": "", "EventFilter": "", "StatusFilter": ""}"#)
            .is_ok()
    );
}

#[test]
fn autotask_refuses_undocumented_keys_and_accepts_documented_ones() {
    let rest = |extra: &str| {
        format!(
            r#"{{"Name": "n", "WebhookUrl": "https://r.example/at",
                "IsSubscribedToUpdateEvents": true{extra}}}"#
        )
    };
    assert_eq!(
        vendor_unknown(autotask::parse_rest(
            &rest(r#", "SecretKy": "k""#),
            "Ticket"
        )),
        pair("SecretKy", "SecretKey")
    );
    assert_eq!(
        vendor_unknown(autotask::parse_rest(
            &rest(r#", "Fields": [{"FieldID": 7, "IsSubscribedFeld": true}]"#),
            "Ticket"
        )),
        pair("Fields[0].IsSubscribedFeld", "IsSubscribedField")
    );
    assert_eq!(
        vendor_unknown(autotask::parse_rest(
            &rest(r#", "ExcludedResources": [{"ResourceId": 1, "Resource": 2}]"#),
            "Ticket"
        )),
        pair("ExcludedResources[0].Resource", "ResourceID")
    );
    // A UDF child is not a field child: its id key is UdfFieldID.
    assert_eq!(
        vendor_unknown(autotask::parse_rest(
            &rest(r#", "UdfFields": [{"FieldID": 7}]"#),
            "Ticket"
        )),
        pair("UdfFields[0].FieldID", "UdfFieldID")
    );
    let documented = rest(
        r#", "id": 4, "WebhookGUID": "g", "DeactivationUrl": "https://r.example/off",
        "IsActive": true, "IsReady": false, "IsSubscribedToCreateEvents": false,
        "IsSubscribedToDeleteEvents": false, "SecretKey": "12345678",
        "SendThresholdExceededNotification": true, "NotificationEmailAddress": "a@example.com",
        "OwnerResourceID": 29682885,
        "Fields": [{"id": 1, "WebhookID": 4, "FieldID": 7, "IsSubscribedField": true,
            "IsDisplayAlwaysField": false}],
        "UdfFields": [{"id": 2, "WebhookID": 4, "UdfFieldID": 29682886, "IsSubscribedField": true,
            "IsDisplayAlwaysField": true}],
        "ExcludedResources": [{"id": 3, "WebhookID": 4, "ResourceID": 30691780}]"#,
    );
    let sub = autotask::parse_rest(&documented, "Ticket").unwrap();
    assert!(autotask::is_ready(&sub));

    let soap = |element: &str| {
        format!(
            r#"<Entity xsi:type="TicketWebhook"><Active>True</Active><Ready>False</Ready>
            <IsSubscribedToCreateEvents>True</IsSubscribedToCreateEvents><Name>n</Name>
            <WebhookUrl>https://r.example/at</WebhookUrl>{element}</Entity>"#
        )
    };
    assert!(autotask::parse_soap(&soap("")).is_ok());
    assert_eq!(
        vendor_unknown(autotask::parse_soap(&soap("<SecretKy>k</SecretKy>"))),
        pair("SecretKy", "SecretKey")
    );
    // SOAP keeps child collections in their own entities.
    assert_eq!(
        vendor_unknown(autotask::parse_soap(&soap("<Fields/>"))).0,
        "Fields"
    );
}

#[test]
fn pipeliner_refuses_undocumented_keys_and_accepts_documented_ones() {
    let doc = |extra: &str| {
        format!(r#"{{"url": "https://r.example/pl", "events": ["Account.*"]{extra}}}"#)
    };
    assert_eq!(
        vendor_unknown(pipeliner::parse_webhook(&doc(
            r#", "signatur": "01234567-abcd-dcba-ffff-000000000000""#
        ))),
        pair("signatur", "signature")
    );
    assert_eq!(
        vendor_unknown(pipeliner::parse_webhook(&doc(
            r#", "options": {"entity": {"Contact": {"load_only": ["id"]}}}"#
        ))),
        pair("options.entity.Contact.load_only", "load-only")
    );
    assert_eq!(
        vendor_unknown(pipeliner::parse_webhook(&doc(
            r#", "options": {"chunk-size": 10}"#
        ))),
        pair("options.chunk-size", "chunk_size")
    );
    // What Pipeliner returns for a webhook can be sent back as it is.
    let documented = doc(
        r#", "id": "9f1c2b7e-0d4a-4c8e-9b7a-2f6d1e3c4a5b", "insecure_ssl": false,
        "signature": "01234567-abcd-dcba-ffff-000000000000", "custom_entity_api_name": "Deal_X",
        "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z",
        "is_deleted": false, "application_id": "4a6c8e0f-1b3d-4f5a-8c7e-9d0b2a4c6e8f",
        "client_id": null, "options": {"related_entity": {"expand": ["contact"]}}"#,
    );
    let sub = pipeliner::parse_webhook(&documented).unwrap();
    assert_eq!(sub.guid, "9f1c2b7e-0d4a-4c8e-9b7a-2f6d1e3c4a5b");
}

fn ok() -> Subscription {
    Subscription::new("https://r.example/hooks").events(["contact.created"])
}

#[test]
fn properties_are_bounded_as_serialized_json() {
    // `{"p":"` + text + `"}` is the text and 8 bytes.
    let at_limit = ok().property("p", json!("x".repeat(limits::PROPERTIES_BYTES - 8)));
    assert_eq!(
        serde_json::to_vec(&at_limit.properties).unwrap().len(),
        limits::PROPERTIES_BYTES
    );
    assert_eq!(at_limit.validate(), Ok(()));
    let over = ok().property("p", json!("x".repeat(limits::PROPERTIES_BYTES - 7)));
    let err = over.validate().unwrap_err();
    assert_eq!(
        err,
        E::TooLarge {
            field: "properties",
            size: limits::PROPERTIES_BYTES + 1,
            max: limits::PROPERTIES_BYTES,
        }
    );
    assert_eq!(
        err.to_string(),
        "properties: 16385 bytes, at most 16384 allowed"
    );
    // Ten megabytes are refused, not stored and echoed in every body.
    let huge = ok().property("p", json!("x".repeat(10_000_000)));
    assert!(matches!(
        huge.validate(),
        Err(E::TooLarge { field: "properties", size, .. }) if size > 10_000_000
    ));
}

#[test]
fn custom_headers_are_bounded_in_total() {
    // Four headers of a 4-byte name and a 4092-byte value: 16384 bytes exactly, each value
    // within its own limit.
    let headers = |last_value: usize| {
        let mut sub = ok();
        for (i, len) in [4092, 4092, 4092, last_value].into_iter().enumerate() {
            sub = sub.header(format!("X-H{i}"), "v".repeat(len));
        }
        sub
    };
    const { assert!(4093 <= limits::HEADER_VALUE) };
    assert_eq!(headers(4092).validate(), Ok(()));
    let err = headers(4093).validate().unwrap_err();
    assert_eq!(
        err,
        E::TooLarge {
            field: "headers",
            size: limits::HEADERS_BYTES + 1,
            max: limits::HEADERS_BYTES,
        }
    );
    assert_eq!(
        err.to_string(),
        "headers: 16385 bytes, at most 16384 allowed"
    );
}

#[test]
fn superoffice_names_its_own_field_for_an_oversized_property() {
    let doc = json!({"Name": "n", "Events": ["contact.created"], "TargetUrl": "https://r.example/",
        "Properties": {"p": "x".repeat(limits::PROPERTIES_BYTES)}});
    let err = superoffice::parse_webhook(&doc.to_string()).unwrap_err();
    assert_eq!(err.field, "Properties");
    assert!(matches!(
        err.source.as_deref(),
        Some(E::TooLarge {
            field: "properties",
            ..
        })
    ));
}
