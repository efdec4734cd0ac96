//! `callout serve` as a child process on 127.0.0.1: the seeds' sample requests, verbatim, over
//! real HTTP, answered in the documented shapes; then events published and delivered to the
//! webhooks they registered; /health, /metrics, 413 before a body is read whole, and a clean
//! stop on SIGTERM.

use std::io::Read;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};
use std::time::Duration;

use callout_testkit::Receiver;
use serde_json::{json, Value};

use crate::Store;

const SO_POST: &str = include_str!("../../../api/tests/seeds/superoffice-post-webhook.json");
const SO_GET_ALL: &str = include_str!("../../../api/tests/seeds/superoffice-get-all-webhooks.json");
const AT_REST: &str = include_str!("../../../api/tests/seeds/autotask-webhooks-rest.json");
const AT_SOAP: &str = include_str!("../../../api/tests/seeds/autotask-webhook-soap.xml");
const PL_WEBHOOK: &str = include_str!("../../../api/tests/seeds/pipeliner-webhook.json");

/// The SuperOffice samples authenticate with `Basic dGplMDpUamUw` (tje0:Tje0); the others
/// with Bearer tokens, or Autotask's UserName/Secret headers.
const TOKENS: &str = "ops-token acme ops\ntje0:Tje0 acme tje0\napi@example.com:s3cret acme autotask\nother-token rival\n";

const WAIT: Duration = Duration::from_secs(15);

struct Server {
    child: Child,
    /// The rest of stdout after the first line.
    stdout: BufReader<ChildStdout>,
    base: String,
    agent: ureq::Agent,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

impl Server {
    fn start(store: &Store) -> Server {
        let mut child = store
            .command(&[
                "--allow",
                "127.0.0.1",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--body-limit",
                "65536",
            ])
            .env("CALLOUT_TOKENS", TOKENS)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callout serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout.read_line(&mut first).expect("first line");
        let base = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .build()
            .into();
        Server {
            child,
            stdout,
            base,
            agent,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.unwrap_or("").as_bytes().to_vec())
            .expect("request");
        let mut response = self.agent.run(request).expect("HTTP");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            content_type,
            body,
        }
    }

    fn bearer(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.send(
            method,
            path,
            &[
                ("authorization", "Bearer ops-token"),
                ("content-type", "application/json"),
            ],
            body,
        )
    }

    /// Sends SIGTERM and waits for the exit; its code and the rest of stdout.
    fn stop(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let ran = crate::finish(self.child, WAIT);
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("stdout");
        assert!(rest.contains("stopped"), "{ran:?} {rest:?}");
        ran.code
    }
}

fn wait_for(receiver: &Receiver, path: &str) -> Vec<callout_testkit::Received> {
    let got = receiver.wait_for(path, 1, WAIT);
    assert_eq!(got.len(), 1, "nothing reached {path}");
    got
}

#[test]
fn the_seeds_register_over_http_and_their_webhooks_get_deliveries() {
    let store = Store::new();
    let receiver = Receiver::ok();
    let server = Server::start(&store);
    let so_headers = [
        ("authorization", "Basic dGplMDpUamUw"),
        ("accept", "application/json; charset=utf-8"),
        ("accept-language", "en"),
        ("content-type", "application/json; charset=utf-8"),
    ];

    // SuperOffice: the POST sample verbatim is refused (Type "ratione" is no plugin), in
    // SuperOffice's error shape naming the field.
    let refused = server.send(
        "POST",
        "/superoffice/api/v1/Webhook",
        &so_headers,
        Some(SO_POST),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["ErrorSource"], "Type");
    // The same document with a real plugin and events registers, as WebhookWithLinks.
    let fixed = SO_POST
        .replace(r#""ratione""#, r#""webhook""#)
        .replace(r#""nostrum""#, r#""contact.created""#)
        .replace(r#""nihil""#, r#""contact.changed""#)
        .replace(
            "http://www.example.com/",
            &format!("{}/superoffice", receiver.url),
        );
    let created = server.send(
        "POST",
        "/superoffice/api/v1/Webhook",
        &so_headers,
        Some(&fixed),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.content_type.starts_with("application/json"));
    let webhook = created.json();
    for key in [
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
    ] {
        assert!(
            webhook.get(key).is_some(),
            "WebhookWithLinks has no {key}: {webhook}"
        );
    }
    assert_eq!(webhook["Secret"], Value::Null, "write-only");
    assert!(webhook["_Links"]["Self"]
        .as_str()
        .unwrap()
        .starts_with(&server.base));
    let sample = server.send(
        "POST",
        "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
        &so_headers,
        Some(SO_GET_ALL),
    );
    assert_eq!(sample.status, 200);
    assert_eq!(
        sample.json(),
        json!([]),
        "the sample's filters match no webhook"
    );
    let all = server.send(
        "POST",
        "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
        &so_headers,
        Some(r#"{"NameFilter": "blick"}"#),
    );
    assert_eq!(all.json()[0]["WebhookId"], webhook["WebhookId"]);

    // Autotask REST: the sample verbatim, with Autotask's own credential headers.
    let at_headers = [
        ("username", "api@example.com"),
        ("secret", "s3cret"),
        ("apiintegrationcode", "INSERTYOUROWN"),
        ("content-type", "application/json"),
    ];
    let at = server.send(
        "POST",
        "/autotask/atservicesrest/v1.0/CompanyWebhooks",
        &at_headers,
        Some(AT_REST),
    );
    assert_eq!(at.status, 200, "{}", at.body);
    let at_id = at.json()["itemId"].as_u64().unwrap();
    let item = server
        .send(
            "GET",
            &format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}"),
            &at_headers,
            None,
        )
        .json()["item"]
        .clone();
    assert_eq!(item["Name"], "myintegration.Accounts.Modify");
    assert_eq!(item["IsReady"], false);
    assert_eq!(item["SecretKey"], Value::Null);
    // Pointed at the receiver and given a subscribed field, it is Ready.
    let url = json!({"id": at_id, "WebhookUrl": format!("{}/autotask", receiver.url)});
    assert_eq!(
        server
            .send(
                "PATCH",
                "/autotask/atservicesrest/v1.0/CompanyWebhooks",
                &at_headers,
                Some(&url.to_string())
            )
            .status,
        200
    );
    let field = server.send(
        "POST",
        &format!("/autotask/atservicesrest/v1.0/CompanyWebhooks/{at_id}/Fields"),
        &at_headers,
        Some(r#"{"FieldID": "companyName", "IsSubscribedField": true}"#),
    );
    assert_eq!(field.status, 200, "{}", field.body);

    // Autotask SOAP: the sample envelope verbatim, over Basic.
    let soap_headers = [
        ("authorization", "Basic dGplMDpUamUw"),
        ("content-type", "text/xml; charset=utf-8"),
        ("soapaction", "\"http://autotask.net/ATWS/v1_6/create\""),
    ];
    let soap = server.send(
        "POST",
        "/autotask/atservices/1.6/atws.asmx",
        &soap_headers,
        Some(AT_SOAP),
    );
    assert_eq!(soap.status, 200, "{}", soap.body);
    assert!(soap.content_type.starts_with("text/xml"));
    assert!(soap
        .body
        .contains("<createResponse xmlns=\"http://autotask.net/ATWS/v1_6/\">"));
    assert!(soap.body.contains("<ReturnCode>1</ReturnCode>"));
    assert!(soap.body.contains("<Name>Angela.Accounts.Modify</Name>"));
    assert!(!soap.body.contains("20201"), "the SecretKey is not echoed");

    // Pipeliner: the options example, comments and all.
    let pl_body = PL_WEBHOOK.replace(
        "https://example.com/pipeliner",
        &format!("{}/pipeliner", receiver.url),
    );
    let pl = server.bearer(
        "POST",
        "/pipeliner/api/v100/rest/spaces/12345/entities/Webhooks",
        Some(&pl_body),
    );
    assert_eq!(pl.status, 200, "{}", pl.body);
    let pl = pl.json();
    assert_eq!(pl["success"], true);
    assert!(pl["data"].get("signature").is_none());

    // Events published through callout's API reach each webhook in its vendor's format.
    let events = json!([
        {"entity": "contact", "action": "created", "id": "18", "data": {"name": "Ada"}},
        {"entity": "Company", "action": "updated", "id": "351182", "actor": "7",
         "data": {"companyName": "New"}, "previous": {"companyName": "Old"}},
        {"entity": "Account", "action": "Update", "id": "a1", "changed": ["owner_id"],
         "data": {"owner_id": "9900cce6-bcd6-412a-bcd1-1904556c949a"}},
    ]);
    let published = server.send(
        "POST",
        "/v1/events",
        &[
            ("authorization", "Bearer ops-token"),
            ("idempotency-key", "seeds-1"),
        ],
        Some(&events.to_string()),
    );
    assert_eq!(published.status, 202, "{}", published.body);
    assert_eq!(
        published.json()["event_ids"],
        json!(["seeds-1:0", "seeds-1:1", "seeds-1:2"])
    );
    let so = wait_for(&receiver, "/superoffice");
    assert_eq!(so[0].json()["Event"], "contact.created");
    assert!(so[0].header("X-SuperOffice-Signature").is_some());
    let at = wait_for(&receiver, "/autotask");
    assert_eq!(at[0].json()["EntityType"], "Account");
    assert_eq!(at[0].json()["Fields"], json!({"companyName": "New"}));
    assert!(at[0].header("X-Hook-Signature").is_some());
    let pl = wait_for(&receiver, "/pipeliner");
    assert_eq!(pl[0].json()[0]["event"], "Account.Update");
    assert!(pl[0].header("WebHook-Signature").is_some());
    // The same publish again is a duplicate: nothing more is sent.
    let again = server.send(
        "POST",
        "/v1/events",
        &[
            ("authorization", "Bearer ops-token"),
            ("idempotency-key", "seeds-1"),
        ],
        Some(&events.to_string()),
    );
    assert_eq!(again.json()["deliveries"], json!([]));

    // Another tenant sees none of it.
    let rival = server.send(
        "GET",
        "/v1/subscriptions",
        &[("authorization", "Bearer other-token")],
        None,
    );
    assert_eq!(rival.json()["data"], json!([]));

    // Metrics count the deliveries; health answers.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let metrics = server.send("GET", "/metrics", &[], None);
        assert!(metrics.content_type.starts_with("text/plain"));
        if metrics
            .body
            .contains("callout_deliveries_total{outcome=\"delivered\"} 3")
        {
            assert!(metrics.body.contains("callout_delivery_duration_seconds"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", metrics.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = server.send("GET", "/health", &[], None);
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );
    assert_eq!(server.stop(), 0);
}

#[test]
fn bodies_over_the_limit_are_refused_before_they_are_read_and_credentials_are_required() {
    let store = Store::new();
    let server = Server::start(&store);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(200_000));
    let refused = server.bearer("POST", "/v1/subscriptions", Some(&big));
    assert_eq!(refused.status, 413);
    assert_eq!(refused.json()["error"]["code"], "too_large");
    let soap = server.send(
        "POST",
        "/autotask/atservices/1.6/atws.asmx",
        &[("authorization", "Basic dGplMDpUamUw")],
        Some(&big),
    );
    assert_eq!(soap.status, 413);
    assert!(soap.body.contains("soap:Fault"));
    let anonymous = server.send("GET", "/v1/subscriptions", &[], None);
    assert_eq!(anonymous.status, 401);
    let openapi = server.send("GET", "/v1/openapi.json", &[], None);
    assert_eq!(openapi.json()["openapi"], "3.1.0");
    assert_eq!(server.stop(), 0);
}

#[test]
fn serve_refuses_to_start_without_credentials() {
    let store = Store::new();
    let ran = store.run(&["serve", "--listen", "127.0.0.1:0"]);
    let line = crate::assert_one_line_failure(ran, 2, &["serve"]);
    assert!(line.contains("no credentials"), "{line}");
    let missing = store.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        "/nonexistent/tokens",
    ]);
    crate::assert_one_line_failure(missing, 3, &["serve", "--tokens"]);
}
