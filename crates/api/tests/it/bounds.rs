//! Bad input never panics and never half-applies: oversized bodies are refused with 413 from
//! their declared or actual length before parsing, and garbage sent to every endpoint gets a
//! 4xx in the endpoint's dialect.

use crate::{Harness, A};

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/v1/subscriptions"),
    ("PUT", "/v1/subscriptions/1"),
    ("PATCH", "/v1/subscriptions/1"),
    ("POST", "/v1/events"),
    ("POST", "/superoffice/api/v1/Webhook"),
    ("PUT", "/superoffice/api/v1/Webhook/1"),
    ("PATCH", "/superoffice/api/v1/Webhook/1"),
    ("POST", "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks"),
    ("POST", "/autotask/atservicesrest/v1.0/CompanyWebhooks"),
    ("PATCH", "/autotask/atservicesrest/v1.0/CompanyWebhooks"),
    ("PUT", "/autotask/atservicesrest/v1.0/CompanyWebhooks"),
    (
        "POST",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks/query",
    ),
    (
        "POST",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks/1/Fields",
    ),
    ("POST", "/autotask/atservices/1.6/atws.asmx"),
    (
        "POST",
        "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks",
    ),
    (
        "PATCH",
        "/pipeliner/api/v100/rest/spaces/1/entities/Webhooks/x",
    ),
];

#[test]
fn oversized_bodies_are_refused_with_413_in_every_dialect() {
    let h = Harness::new();
    let limit = h.api.max_body();
    let big = vec![b' '; limit + 1];
    for (method, path) in ENDPOINTS {
        let answer = h.send(method, path, A, &[], big.clone());
        assert_eq!(answer.status, 413, "{method} {path}: {}", answer.text());
        // A declared length over the limit is refused before the body is looked at.
        let declared = h.send(
            method,
            path,
            A,
            &[("content-length", "99999999")],
            b"{}".to_vec(),
        );
        assert_eq!(declared.status, 413, "{method} {path}");
    }
    assert!(h
        .engine()
        .subscriptions()
        .list(&Default::default())
        .unwrap()
        .is_empty());
}

#[test]
fn garbage_gets_a_client_error_from_every_endpoint_and_stores_nothing() {
    let h = Harness::new();
    let nested = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}{}", r#"{"a":"#.repeat(5_000), "}".repeat(5_000));
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"null".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"{\"WebhookId\": 1e400}".to_vec(),
        b"{\"id\": -1, \"Name\": 7}".to_vec(),
        b"<Entity xsi:type=\"AccountWebhook\"><Name>".to_vec(),
        b"[{\"op\": \"add\", \"path\": \"/~2\", \"value\": 1}]".to_vec(),
        nested.into_bytes(),
        deep_object.into_bytes(),
        "{\"Name\": \"\u{202e}\", \"url\": \"https://\u{0}/\"}"
            .as_bytes()
            .to_vec(),
    ];
    for (method, path) in ENDPOINTS {
        for body in &bodies {
            if body.is_empty() && path.ends_with("GetAllWebhooks") {
                continue; // no filter at all: every webhook, a valid request
            }
            let answer = h.send(method, path, A, &[], body.clone());
            assert!(
                answer.status.is_client_error(),
                "{method} {path} {:?}: {} {}",
                String::from_utf8_lossy(body),
                answer.status,
                answer.text()
            );
        }
    }
    assert!(h
        .engine()
        .subscriptions()
        .list(&Default::default())
        .unwrap()
        .is_empty());
    assert_eq!(h.engine().stats().unwrap().due, 0);
}

#[test]
fn odd_paths_and_methods_are_client_errors() {
    let h = Harness::new();
    for (method, path) in [
        ("GET", "/v1/subscriptions/18446744073709551616"),
        ("GET", "/v1/subscriptions/%ZZ"),
        ("GET", "/v1/subscriptions/1/2/3/4"),
        ("TRACE", "/v1/subscriptions"),
        ("GET", "/superoffice/api/v1/Webhook/-1"),
        ("GET", "/autotask/atservicesrest/v1.0/"),
        (
            "GET",
            "/autotask/atservicesrest/v1.0/CompanyWebhooks/1/Fields/2/3",
        ),
        ("GET", "/pipeliner/api/v100/rest/spaces"),
        ("GET", "/pipeliner/api/v100/rest/spaces/1/entities/Accounts"),
    ] {
        let answer = h.call(method, path, A, "");
        assert!(
            answer.status.is_client_error(),
            "{method} {path}: {}",
            answer.status
        );
    }
}
