//! `callout repair`: a damaged store (a flipped byte in sled's `conf`) is named as damaged by
//! every other command, and repair copies it into a new store, says what it could not read and
//! exits 1 for it; the damaged store is left as it was.

use serde_json::json;

use crate::{assert_one_line_failure, subscription, Store, CONTACT_CREATED};

/// The store's files and their bytes, to see that nothing wrote them.
fn files(store: &Store) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(&store.path)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
        .collect();
    out.sort();
    out
}

/// A second store handle on `path`, for commands against the repaired store.
fn at(path: std::path::PathBuf) -> Store {
    Store {
        _dir: tempfile::tempdir().unwrap(),
        path,
    }
}

#[test]
fn repair_of_a_store_with_a_damaged_conf_copies_it_reports_the_conf_and_exits_1() {
    let store = Store::new();
    let sub = subscription("https://receiver.example/hooks", json!({}));
    store.ok(&["subscriptions", "create", &sub]);
    store.ok(&["publish", CONTACT_CREATED]);
    let conf = store.path.join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    let at_version = bytes
        .windows(11)
        .position(|w| w == b"version: 0.")
        .expect("sled's conf names its version");
    bytes[at_version + 9] = b'2';
    std::fs::write(&conf, &bytes).unwrap();
    let before = files(&store);

    let line = store.fails(&["stats"], 1);
    assert!(line.contains("is damaged"), "{line}");
    assert!(line.contains("repair --to"), "{line}");

    let repaired = store.path.with_file_name("repaired");
    let ran = store.run(&["repair", "--to", repaired.to_str().unwrap()]);
    let stdout = ran.stdout.clone();
    let line = assert_one_line_failure(ran, 1, &["repair"]);
    assert!(
        line.contains("1 record or file could not be read"),
        "{line}"
    );
    assert!(
        stdout.contains("the damaged store is unchanged"),
        "{stdout}"
    );
    assert!(stdout.contains("subscriptions         1"), "{stdout}");
    assert!(stdout.contains("due                   1"), "{stdout}");
    assert!(stdout.contains("could not read:"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("conf ") && l.contains("checksum")),
        "{stdout}"
    );
    assert_eq!(files(&store), before, "the damaged store was not written");

    let new = at(repaired.clone());
    let stats = new.json(&["stats"]);
    assert_eq!(stats["total"]["due"], 1, "{stats}");
    assert_eq!(
        new.json(&["subscriptions", "list"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // With --json, the same report for scripts.
    let second = store.path.with_file_name("repaired-again");
    let ran = store.run(&["--json", "repair", "--to", second.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["copied"]["subscriptions"], 1, "{report}");
    assert_eq!(report["unreadable"][0]["place"], "conf", "{report}");

    // A target that holds something is refused as bad input.
    let line = store.fails(&["repair", "--to", repaired.to_str().unwrap()], 2);
    assert!(line.contains("not empty"), "{line}");
}

#[test]
fn repair_of_a_sound_store_exits_0_and_a_missing_store_is_not_found() {
    let store = Store::new();
    let repaired = store.path.with_file_name("repaired");
    let stdout = store.ok(&["repair", "--to", repaired.to_str().unwrap()]);
    assert!(stdout.contains("everything read"), "{stdout}");
    let missing = Store::uninitialised();
    let line = missing.fails(&["repair", "--to", repaired.to_str().unwrap()], 3);
    assert!(line.contains("no callout store at"), "{line}");
}
