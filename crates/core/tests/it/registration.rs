//! Requests that register a webhook, checked as the vendor checks them before it creates one:
//! Autotask's required fields, in both of its APIs, on the seeds' sample requests.

use callout_core::vendor::autotask;
use callout_core::{Subscription, VendorError};
use serde_json::{json, Value};

/// `seeds/autotask-webhooks-rest.txt`'s sample request body, as it is.
const REST_SAMPLE: &str = r#"{
"IsActive": true,
"DeactivationUrl": "https://wrkhbq676nwh8.d.samplecompany.net",
"IsSubscribedToUpdateEvents": true,
"Name": "myintegration.Accounts.Modify",
"SecretKey": "12345678",
"SendThresholdExceededNotification": false,
"WebhookUrl": "https://wrkhbq676nwh8.d.samplecompany.net"
}"#;

/// `seeds/autotask-webhook-soap.txt`'s sample request, as it is (it ends without
/// `</soap:Envelope>`).
const SOAP_SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
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

fn refused(result: Result<Subscription, VendorError>) -> String {
    result.expect_err("should be refused").field
}

#[test]
fn both_sample_requests_are_taken_and_read_as_the_lenient_parsers_read_them() {
    let rest = autotask::parse_request(REST_SAMPLE, Some("Company")).unwrap();
    assert_eq!(rest, autotask::parse_rest(REST_SAMPLE, "Company").unwrap());
    let soap = autotask::parse_request(SOAP_SAMPLE, None).unwrap();
    assert_eq!(soap, autotask::parse_soap(SOAP_SAMPLE).unwrap());
    assert_eq!(soap.events, ["account.updated"]);
    // Blank lines and a byte-order mark before the XML do not make it JSON.
    let padded = format!("\u{feff}\n  {SOAP_SAMPLE}");
    assert_eq!(
        autotask::parse_request(&padded, Some("Account")).unwrap(),
        soap
    );
    assert_eq!(
        autotask::parse_request(SOAP_SAMPLE, Some("Company")).unwrap(),
        soap
    );
}

#[test]
fn a_rest_request_without_a_required_field_is_refused_naming_it() {
    for field in autotask::REQUIRED_REST_FIELDS {
        let mut doc: Value = serde_json::from_str(REST_SAMPLE).unwrap();
        doc.as_object_mut().unwrap().remove(*field);
        let error = autotask::parse_request(&doc.to_string(), Some("Company")).unwrap_err();
        assert_eq!(error.field, *field);
        assert!(error.to_string().contains("is required"), "{error}");
        // Blank or null is no better.
        doc[*field] = json!("  ");
        assert_eq!(
            refused(autotask::parse_request(&doc.to_string(), Some("Company"))),
            *field
        );
        doc[*field] = Value::Null;
        assert_eq!(
            refused(autotask::parse_request(&doc.to_string(), Some("Company"))),
            *field
        );
    }
    // Not required: SendThresholdExceededNotification (Autotask's SOAP sample leaves it out).
    let mut doc: Value = serde_json::from_str(REST_SAMPLE).unwrap();
    doc.as_object_mut()
        .unwrap()
        .remove("SendThresholdExceededNotification");
    assert!(autotask::parse_request(&doc.to_string(), Some("Company")).is_ok());
    // No callout type at all.
    doc["IsSubscribedToUpdateEvents"] = json!(false);
    assert_eq!(
        refused(autotask::parse_request(&doc.to_string(), Some("Company"))),
        "IsSubscribedTo*Events"
    );
    // An unknown key is named before a missing one, so a typo says what was meant.
    let typo = REST_SAMPLE.replace("\"DeactivationUrl\"", "\"DeactivatonUrl\"");
    let error = autotask::parse_request(&typo, Some("Company")).unwrap_err();
    assert_eq!(error.field, "DeactivatonUrl", "{error}");
    // The lenient parser still reads what Autotask returns or a host keeps, URL or not.
    let without = REST_SAMPLE.replace(
        "\"DeactivationUrl\": \"https://wrkhbq676nwh8.d.samplecompany.net\",",
        "",
    );
    assert!(autotask::parse_rest(&without, "Company").is_ok());
}

#[test]
fn a_soap_request_without_a_required_field_is_refused_naming_it() {
    for (field, element) in [
        ("Active", "<Active>True</Active>"),
        (
            "DeactivationUrl",
            "<DeactivationUrl>https://enkmoj676nwh8.x.pipedream.net</DeactivationUrl>",
        ),
        ("Name", "<Name>Angela.Accounts.Modify</Name>"),
        ("SecretKey", "<SecretKey>20201</SecretKey>"),
        (
            "WebhookUrl",
            "<WebhookUrl>https://enymf79yfhr0d.x.pipedream.net</WebhookUrl>",
        ),
    ] {
        assert!(SOAP_SAMPLE.contains(element), "{element}");
        let without = SOAP_SAMPLE.replace(element, "");
        assert_eq!(refused(autotask::parse_request(&without, None)), field);
        let empty = SOAP_SAMPLE.replace(element, &format!("<{field}/>"));
        assert_eq!(refused(autotask::parse_request(&empty, None)), field);
    }
    assert!(autotask::REQUIRED_SOAP_FIELDS.contains(&"Active"));
}

#[test]
fn the_entity_of_a_request_comes_from_its_endpoint_or_its_xsi_type() {
    assert_eq!(
        refused(autotask::parse_request(REST_SAMPLE, None)),
        "Entity"
    );
    assert_eq!(
        refused(autotask::parse_request(SOAP_SAMPLE, Some("Contact"))),
        "xsi:type"
    );
    assert_eq!(refused(autotask::parse_request("{", Some("Company"))), "");
    assert_eq!(refused(autotask::parse_request("<Entity", None)), "Entity");
}
