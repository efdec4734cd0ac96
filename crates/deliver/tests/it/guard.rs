//! The SSRF guard against a real receiver on 127.0.0.1.

use std::time::Duration;

use callout_deliver::{AllowList, ErrorClass, Request, Sender, SenderConfig};

use callout_testkit::{Receiver, Reply};

fn sender(allow: &[&str]) -> Sender {
    Sender::new(SenderConfig {
        allow: AllowList::parse(allow).unwrap(),
        ..SenderConfig::default()
    })
    .unwrap()
}

#[test]
fn loopback_is_refused_unless_allowed() {
    let receiver = Receiver::ok();
    let request = Request::new("d", receiver.url.clone(), b"{}".to_vec());

    let outcome = sender(&[]).send(&request);
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::BlockedAddress),
        "{outcome:?}"
    );
    assert!(
        receiver.nth(0, Duration::from_millis(300)).is_none(),
        "the receiver was reached"
    );

    // An allowed range opens it, an unrelated one does not.
    assert_eq!(
        sender(&["10.0.0.0/8"]).send(&request).error_class(),
        Some(ErrorClass::BlockedAddress)
    );
    assert!(sender(&["127.0.0.0/8"]).send(&request).is_delivered());
    assert!(receiver.nth(0, Duration::from_secs(5)).is_some());
}

#[test]
fn the_resolved_address_is_checked_not_the_name() {
    let receiver = Receiver::ok();
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let outcome = sender(&[]).send(&Request::new("d", by_name.clone(), b"{}".to_vec()));
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::BlockedAddress),
        "{outcome:?}"
    );

    // Allowing the address the name resolves to lets it through (localhost may also resolve
    // to ::1, which stays refused and is simply not used).
    assert!(sender(&["127.0.0.1"])
        .send(&Request::new("d", by_name, b"{}".to_vec()))
        .is_delivered());
    assert!(receiver.nth(0, Duration::from_secs(5)).is_some());
}

#[test]
fn mapped_and_unspecified_forms_are_refused() {
    for url in [
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://0.0.0.0:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:9/",
    ] {
        let outcome = sender(&[]).send(&Request::new("d", url, b"{}".to_vec()));
        assert_eq!(
            outcome.error_class(),
            Some(ErrorClass::BlockedAddress),
            "{url}: {outcome:?}"
        );
    }
}

#[test]
fn through_a_proxy_the_target_is_still_guarded() {
    // The receiver plays the proxy; it is reached although it is on loopback, because the
    // operator configured it.
    let receiver = Receiver::start(|_, _| Reply::status(502));
    let proxy = receiver.url.clone();
    let sender = |allow: &[&str]| {
        Sender::new(SenderConfig {
            allow: AllowList::parse(allow).unwrap(),
            proxy: Some(proxy.clone()),
            ..SenderConfig::default()
        })
        .unwrap()
    };
    let request = Request::new("d", "http://10.1.2.3:8080/hook", b"{}".to_vec());

    let outcome = sender(&[]).send(&request);
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::BlockedAddress),
        "{outcome:?}"
    );
    assert!(
        receiver.nth(0, Duration::from_millis(300)).is_none(),
        "the proxy was asked"
    );

    // Allowed, the request goes to the proxy (ureq tunnels with CONNECT), which refuses it.
    let outcome = sender(&["10.0.0.0/8"]).send(&request);
    assert_eq!(outcome.error_class(), Some(ErrorClass::Io), "{outcome:?}");
    let asked = receiver.nth(0, Duration::from_secs(5)).unwrap();
    assert!(asked.path.contains("10.1.2.3"), "{}", asked.path);
}
