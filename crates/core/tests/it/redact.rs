//! Credentials other than signing secrets stay out of `Debug`, errors and default names.

use callout_core::{redact_url, InvalidSubscription, Subscription};

fn with_credentials() -> Subscription {
    Subscription::new("https://user:hunter2@receiver.example/x")
        .events(["contact.created"])
        .header("Authorization", "Bearer tok123")
        .deactivation_url("https://bye:byepass@receiver.example/gone")
        .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
}

#[test]
fn debug_hides_url_passwords_and_header_values_but_shows_user_host_and_header_name() {
    let sub = with_credentials();
    assert_eq!(sub.validate(), Ok(()));
    for shown in [format!("{sub:?}"), format!("{sub:#?}")] {
        for secret in ["hunter2", "tok123", "byepass", "MfKQ9r8G"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in [
            "https://user:***@receiver.example/x",
            "https://bye:***@receiver.example/gone",
            "Authorization",
        ] {
            assert!(shown.contains(kept), "{kept} missing from {shown}");
        }
    }
}

#[test]
fn debug_hides_a_password_in_a_name_stored_before_names_dropped_it() {
    let sub = with_credentials().name("https://user:hunter2@receiver.example/x");
    assert!(!format!("{sub:?}").contains("hunter2"));
}

#[test]
fn the_default_name_leaves_the_userinfo_out() {
    assert_eq!(with_credentials().name, "https://receiver.example/x");
}

#[test]
fn bad_url_errors_hide_the_password() {
    let mut sub = with_credentials();
    sub.target_url = "ftp://user:hunter2@receiver.example/x".into();
    let error = sub.validate().unwrap_err();
    assert_eq!(
        error,
        InvalidSubscription::BadUrl {
            field: "target_url",
            url: "ftp://user:***@receiver.example/x".into()
        }
    );
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user") && shown.contains("receiver.example"));
    }
    // No scheme at all: the likeliest slip, still hidden.
    sub.target_url = "user:hunter2@receiver.example/x".into();
    assert!(!sub.validate().unwrap_err().to_string().contains("hunter2"));
}

#[test]
fn redact_url_is_idempotent() {
    let once = redact_url("https://user:hunter2@receiver.example/x").into_owned();
    assert_eq!(redact_url(&once), once);
}
