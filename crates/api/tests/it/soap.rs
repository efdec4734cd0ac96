//! Autotask's SOAP dialect: the seed's `create` envelope, `update`, `query` and `delete`,
//! ATWS results, errors (`ReturnCode` -1) and faults.

use crate::{Harness, A};

/// The sample request of `seeds/autotask-webhook-soap.txt`, verbatim (the seed ends before
/// `</soap:Envelope>`; a client sends the whole envelope, so it is closed here).
pub(crate) const SOAP_SAMPLE: &str = include_str!("../seeds/autotask-webhook-soap.xml");

const PATH: &str = "/autotask/atservices/1.6/atws.asmx";

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

/// A `query` envelope with one field condition (`op` e.g. `equals`, `isnotnull`).
pub(crate) fn query_envelope(entity: &str, field: &str, op: &str) -> String {
    query_with(
        entity,
        &format!(r#"<field>{field}<expression op="{op}"></expression></field>"#),
    )
}

fn query_with(entity: &str, conditions: &str) -> String {
    envelope(&format!(
        r#"<query xmlns="http://autotask.net/ATWS/v1_6/"><sXML><![CDATA[<queryxml><entity>{entity}</entity><query>{conditions}</query></queryxml>]]></sXML></query>"#
    ))
}

/// The text of the first `<name>` element.
fn element<'t>(xml: &'t str, name: &str) -> &'t str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"));
    let end = xml[start..]
        .find(&format!("</{name}>"))
        .map(|i| start + i)
        .unwrap();
    &xml[start..end]
}

#[test]
fn the_seed_envelope_creates_and_the_result_is_atws_shaped() {
    let h = Harness::new();
    let answer = h.send(
        "POST",
        PATH,
        A,
        &[
            ("content-type", "text/xml; charset=utf-8"),
            ("soapaction", "\"http://autotask.net/ATWS/v1_6/create\""),
        ],
        SOAP_SAMPLE,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let xml = answer.text();
    assert!(
        xml.contains(r#"<createResponse xmlns="http://autotask.net/ATWS/v1_6/"><createResult>"#),
        "{xml}"
    );
    assert_eq!(element(&xml, "ReturnCode"), "1");
    assert_eq!(element(&xml, "EntityResultType"), "accountwebhook");
    assert!(xml.contains(r#"<Entity xsi:type="AccountWebhook""#));
    assert_eq!(element(&xml, "Name"), "Angela.Accounts.Modify");
    assert_eq!(element(&xml, "DatabaseAction"), "Create");
    assert!(!xml.contains("SecretKey"), "{xml}");
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/xml"));
    let id: u64 = element(&xml, "EntityId").parse().unwrap();
    let stored = h.engine().subscriptions().get(id).unwrap().unwrap();
    assert_eq!(stored.secrets[0].expose(), "20201");
    assert_eq!(stored.tenant.as_deref(), Some("tenant-a"));
}

#[test]
fn update_query_and_delete_work_on_the_callers_webhooks() {
    let h = Harness::new();
    let created = h.call("POST", PATH, A, SOAP_SAMPLE).text();
    let id = element(&created, "EntityId").to_string();
    let update = envelope(&format!(
        r#"<update xmlns="http://autotask.net/ATWS/v1_6/"><Entities><Entity xsi:type="AccountWebhook"><id>{id}</id><Active>False</Active><IsSubscribedToUpdateEvents>True</IsSubscribedToUpdateEvents><Name>Renamed</Name><WebhookUrl>https://enymf79yfhr0d.x.pipedream.net</WebhookUrl></Entity></Entities></update>"#
    ));
    let updated = h.call("POST", PATH, A, &update);
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(element(&updated.text(), "Active"), "False");
    assert_eq!(element(&updated.text(), "DatabaseAction"), "Update");
    let stored = h
        .engine()
        .subscriptions()
        .get(id.parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secrets[0].expose(),
        "20201",
        "an update without SecretKey keeps it"
    );

    let found = h
        .call(
            "POST",
            PATH,
            A,
            &query_envelope("AccountWebhook", "id", "isnotnull"),
        )
        .text();
    assert_eq!(element(&found, "ReturnCode"), "1");
    assert_eq!(element(&found, "Name"), "Renamed");
    let by_name = query_with(
        "AccountWebhook",
        r#"<condition operator="OR"><field>Name<expression op="equals">nobody</expression></field><field>Name<expression op="beginswith">ren</expression></field></condition>"#,
    );
    assert!(h
        .call("POST", PATH, A, &by_name)
        .text()
        .contains("<Name>Renamed</Name>"));
    let none = query_with(
        "AccountWebhook",
        r#"<field>Active<expression op="equals">True</expression></field>"#,
    );
    assert!(!h.call("POST", PATH, A, &none).text().contains("<Entity "));
    let contacts = h
        .call(
            "POST",
            PATH,
            A,
            &query_envelope("ContactWebhook", "id", "isnotnull"),
        )
        .text();
    assert!(!contacts.contains("<Entity "), "{contacts}");

    let delete = envelope(&format!(
        r#"<delete xmlns="http://autotask.net/ATWS/v1_6/"><Entities><Entity xsi:type="AccountWebhook"><id>{id}</id></Entity></Entities></delete>"#
    ));
    let deleted = h.call("POST", PATH, A, &delete);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(element(&deleted.text(), "DatabaseAction"), "Delete");
    assert!(h
        .engine()
        .subscriptions()
        .get(id.parse().unwrap())
        .unwrap()
        .is_none());
    let again = h.call("POST", PATH, A, &delete);
    assert_eq!(again.status, 404);
    assert_eq!(element(&again.text(), "ReturnCode"), "-1");
}

#[test]
fn invalid_entities_fail_the_whole_call_and_bad_envelopes_are_faults() {
    let h = Harness::new();
    // Two entities, the second invalid: nothing is created.
    let two = SOAP_SAMPLE.replace(
        "</Entities>",
        r#"<Entity xsi:type="AccountWebhook"><Name>x</Name><WebhookUrl>not a url</WebhookUrl><IsSubscribedToUpdateEvents>True</IsSubscribedToUpdateEvents></Entity></Entities>"#,
    );
    let answer = h.call("POST", PATH, A, &two);
    assert_eq!(answer.status, 400, "{}", answer.text());
    let xml = answer.text();
    assert_eq!(element(&xml, "ReturnCode"), "-1");
    assert!(element(&xml, "Message").contains("WebhookUrl"), "{xml}");
    assert!(h
        .engine()
        .subscriptions()
        .list(&Default::default())
        .unwrap()
        .is_empty());
    let unknown = SOAP_SAMPLE.replace("<Active>True</Active>", "<Colour>red</Colour>");
    assert!(element(&h.call("POST", PATH, A, &unknown).text(), "Message").contains("Colour"));

    for body in [
        "",
        "not xml at all",
        "<html><body/></html>",
        &envelope("<getEntityInfo/>"),
        &envelope(r#"<frobnicate xmlns="x"></frobnicate>"#),
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><create>"#,
    ] {
        let answer = h.call("POST", PATH, A, body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert!(
            answer.text().contains("<faultcode>soap:Client</faultcode>"),
            "{body}"
        );
    }
    let bad_query = query_with(
        "AccountWebhook",
        r#"<field>id<expression op="soundslike">x</expression></field>"#,
    );
    let answer = h.call("POST", PATH, A, &bad_query);
    assert_eq!(answer.status, 400);
    assert!(element(&answer.text(), "Message").contains("soundslike"));
    let bad_entity = query_envelope("Widget", "id", "isnotnull");
    assert_eq!(h.call("POST", PATH, A, &bad_entity).status, 400);
    assert_eq!(h.call("GET", PATH, A, "").status, 405);
}
