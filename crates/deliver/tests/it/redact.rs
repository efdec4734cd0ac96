//! Credentials other than signing secrets stay out of what the sender prints, and out of what
//! ureq logs for a host that follows the crate's logging advice.

use std::cell::{Cell, RefCell};
use std::sync::Once;
use std::time::Duration;

use callout_deliver::{
    sign::standard::Secret, DeliverError, Request, Sender, SenderConfig, Signature, Verdict,
};
use callout_testkit::{Receiver, Reply};

use crate::support::sender;

const PASSWORD: &str = "hunter2";
const TOKEN: &str = "tok123";
/// `user:hunter2` as ureq sends it, in a Basic `authorization` header.
const BASIC: &str = "dXNlcjpodW50ZXIy";

/// `receiver.url` (`http://127.0.0.1:<port>`) with a user and password.
fn with_userinfo(receiver: &Receiver, path: &str) -> String {
    let host = receiver.url.strip_prefix("http://").unwrap();
    format!("http://user:{PASSWORD}@{host}{path}")
}

fn request(url: &str) -> Request {
    let mut request = Request::new("del_1", url, br#"{"type":"contact.updated"}"#.to_vec());
    request
        .custom_headers
        .push(("Authorization".into(), format!("Bearer {TOKEN}")));
    request
}

#[test]
fn request_debug_hides_the_url_password_and_header_values() {
    let mut request = request("https://user:hunter2@receiver.example/x");
    request.signature = Signature::Standard {
        secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
    };
    for shown in [format!("{request:?}"), format!("{request:#?}")] {
        for secret in [PASSWORD, TOKEN, "MfKQ9r8G"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("https://user:***@receiver.example/x"),
            "{shown}"
        );
        assert!(shown.contains("Authorization"), "{shown}");
    }
}

#[test]
fn failure_details_hide_the_url_password() {
    // No host: refused before anything is sent, the URL quoted in the detail.
    let outcome = sender().send(&request("http://user:hunter2@/x"));
    let Verdict::Failed { detail, .. } = &outcome.verdict else {
        panic!("sent: {outcome:?}");
    };
    assert!(!detail.contains(PASSWORD), "{detail}");
    assert!(detail.contains("user:***@"), "{detail}");
}

#[test]
fn a_redirect_detail_hides_the_password_of_its_location() {
    let receiver = Receiver::start(|_, _| {
        Reply::status(302).header("Location", "https://elsewhere:hunter2@receiver.example/")
    });
    let outcome = sender().send(&request(&receiver.url));
    let shown = outcome.verdict.to_string();
    assert!(
        shown.contains("HTTP 302 to https://elsewhere:***@receiver.example/"),
        "{shown}"
    );
}

#[test]
fn a_refused_proxy_is_named_without_its_password() {
    let error = Sender::new(SenderConfig {
        proxy: Some("socks5://user:hunter2@127.0.0.1:1080".into()),
        ..SenderConfig::default()
    })
    .unwrap_err();
    assert!(
        matches!(&error, DeliverError::InvalidProxy { proxy, .. } if proxy == "socks5://user:***@127.0.0.1:1080")
    );
    assert!(!format!("{error} {error:?}").contains(PASSWORD));
}

thread_local! {
    /// Whether `log` records of this thread are kept: the sender sends on the calling thread,
    /// so the other tests of this binary, running on their own threads, are not captured.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static CAPTURED: RefCell<Vec<(log::Level, String, String)>> = const { RefCell::new(Vec::new()) };
}

/// A host's `log` backend (env_logger, or tracing-log's bridge): it sees every ureq record.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        CAPTURING.get()
    }

    fn log(&self, record: &log::Record<'_>) {
        if CAPTURING.get() {
            let entry = (
                record.level(),
                record.target().to_string(),
                record.args().to_string(),
            );
            CAPTURED.with_borrow_mut(|captured| captured.push(entry));
        }
    }

    fn flush(&self) {}
}

/// Every `log` record the sending thread produced while `send` ran.
fn logged_while(send: impl FnOnce()) -> Vec<(log::Level, String, String)> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // The test binary is the host here: setting the global logger is its call to make.
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    CAPTURING.set(true);
    send();
    CAPTURING.set(false);
    CAPTURED.take()
}

#[test]
fn capping_ureq_at_debug_keeps_credentials_out_of_a_hosts_logs() {
    let receiver = Receiver::ok();
    let url = with_userinfo(&receiver, "/x");
    let records = logged_while(|| {
        assert_eq!(sender().send(&request(&url)).verdict, Verdict::Delivered);
    });
    let received = receiver.nth(0, Duration::from_secs(5)).unwrap();
    assert_eq!(received.one("authorization"), format!("Bearer {TOKEN}"));

    // The hazard is real: ureq-proto's TRACE records hex-dump the request head, 16 bytes a
    // record with their ASCII last, which joined read `authorization: Bearer tok123`.
    let wire: String = records
        .iter()
        .filter(|(level, target, _)| {
            *level == log::Level::Trace && target.starts_with("ureq_proto")
        })
        .map(|(_, _, message)| {
            message
                .chars()
                .rev()
                .take(16)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        })
        .collect();
    assert!(
        wire.contains(TOKEN),
        "ureq no longer dumps the request head; revisit the crate docs: {wire}"
    );

    // What the crate docs tell a host to do: targets starting with `ureq` at most DEBUG.
    let kept: Vec<_> = records
        .iter()
        .filter(|(level, target, _)| !(target.starts_with("ureq") && *level > log::Level::Debug))
        .collect();
    assert!(
        kept.iter().any(|(_, target, _)| target.starts_with("ureq")),
        "ureq logged nothing at DEBUG: {records:?}"
    );
    let all: String = kept
        .iter()
        .map(|(_, _, message)| message.as_str())
        .collect();
    for secret in [PASSWORD, TOKEN, BASIC] {
        assert!(!all.contains(secret), "{secret} logged: {kept:?}");
    }
}
