//! `callout verify` against the profiles' published vectors: a match passes, one changed byte
//! fails with one line and exit code 1.

use std::path::Path;

use crate::Store;

const AUTOTASK_BODY: &str = r#"{"Action":"Update","Guid":"d0046a73-76a0-41c4-a634-4b7fce7e43ec","EntityType":"Ticket","Id":351182,"Fields":{"Title":"Printer \u0026 scanner down \u2013 Caf\u00E9","Status":"5"},"EventTime":"2025-09-15T15:10:00Z","SequenceNumber":2,"PersonID":30691780}"#;
const SUPEROFFICE_BODY: &str = r#"{"EventId":"88f91933-edce-4c1a-8ded-ade8e2f72434","Timestamp":"2018-04-05T08:28:01.5732501Z","Changes":["contact_id","updated_associate_id","soundEx","updated","name"],"Event":"contact.changed","PrimaryKey":18,"Entity":"contact","ContextIdentifier":"Cust54321","ChangedByAssociateId":5,"WebhookName":"Tonys Contact Handler"}"#;
const STANDARD_BODY: &str = r#"{"test": 2432232314}"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.display().to_string()
}

#[test]
fn each_profile_verifies_its_vector_and_refuses_a_changed_body() {
    // verify needs no store.
    let store = Store::uninitialised();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "autotask",
            "SuperSecretKey123",
            "X-Hook-Signature: sha1=UBpKrqL6GbgAzcKkhagnAePZ4jU=",
            AUTOTASK_BODY,
        ),
        (
            "superoffice",
            "Something Super Secret",
            "X-SuperOffice-Signature: BCiOaqlMZ2idyAhrKK+twtAuLPOdBYE96ebKwdXx3CA=",
            SUPEROFFICE_BODY,
        ),
    ];
    for (profile, secret, header, body) in cases {
        let good = write(dir.path(), &format!("{profile}.json"), body);
        let ok = store.ok(&verify(profile, secret, header, &good));
        assert!(
            ok.starts_with(&format!("ok: the {profile} signature matches")),
            "{ok}"
        );

        let changed = write(
            dir.path(),
            &format!("{profile}-changed.json"),
            &body.replace('5', "6"),
        );
        let line = store.fails(&verify(profile, secret, header, &changed), 1);
        assert_eq!(
            line,
            format!("callout: the {profile} signature does not verify: no signature matches")
        );
    }
}

#[test]
fn a_captured_standard_request_verifies_from_a_headers_file() {
    let store = Store::uninitialised();
    let dir = tempfile::tempdir().unwrap();
    let body = write(dir.path(), "body.json", STANDARD_BODY);
    let headers = write(
        dir.path(),
        "headers.txt",
        "POST /hooks HTTP/1.1\nwebhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\nwebhook-timestamp: 1614265330\nwebhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n",
    );
    let base = [
        "verify",
        "--profile",
        "standard",
        "--headers",
        &headers,
        "--body",
        &body,
    ];
    let secret = ["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];

    // Captured in 2021: outside the replay window unless told to ignore it.
    let line = store.fails(&[&base[..], &secret].concat(), 1);
    assert!(line.contains("away from now"), "{line}");
    let ok = store.json(&[&base[..], &secret, &["--ignore-timestamp"]].concat());
    assert_eq!(
        ok,
        serde_json::json!({"valid": true, "profile": "standard"})
    );

    // The secret can come from the environment, out of `ps`.
    let ran = store
        .command(&[&base[..], &["--ignore-timestamp"]].concat())
        .env("CALLOUT_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");

    let line = store.fails(
        &[
            "verify",
            "--profile",
            "standard",
            "--secret",
            secret[1],
            "--body",
            &body,
        ],
        1,
    );
    assert_eq!(
        line,
        "callout: the standard signature does not verify: the header `webhook-timestamp` is missing"
    );
}

/// `callout verify` with a profile, secret, one header and a body file.
fn verify<'a>(profile: &'a str, secret: &'a str, header: &'a str, body: &'a str) -> [&'a str; 9] {
    [
        "verify",
        "--profile",
        profile,
        "--secret",
        secret,
        "-H",
        header,
        "--body",
        body,
    ]
}
