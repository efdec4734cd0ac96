//! Opening: creation, the lock against a second handle or process, the format check.

use callout_store::{Queue, SledStore, StoreConfig, StoreError};

use crate::{delivery, open, spawn_self};

const PROBE: &str = "CALLOUT_STORE_LOCK_PROBE";

#[test]
fn open_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("store");
    let store = open(&path);
    assert!(path.is_dir());
    assert_eq!(store.counts().unwrap(), Default::default());
}

#[test]
fn second_handle_in_the_same_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let second = SledStore::open(dir.path(), StoreConfig::default());
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{second:?}"
    );
    // Through another spelling of the same path too.
    let other = dir.path().join(".");
    let third = SledStore::open(&other, StoreConfig::default());
    assert!(matches!(third, Err(StoreError::Locked { .. })), "{third:?}");
}

#[test]
fn store_reopens_once_the_first_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.enqueue(&[], vec![delivery(1, "e1", 10)], 10).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.counts().unwrap().due, 1);
}

/// In the child: tries to open the store and prints how that went. In the parent: holds the
/// store open and expects the child to be refused with `Locked`.
#[test]
fn second_process_is_locked() {
    if let Some(path) = std::env::var_os(PROBE) {
        let outcome = match SledStore::open(&path, StoreConfig::default()) {
            Ok(_) => "OPENED".to_string(),
            Err(StoreError::Locked { .. }) => "LOCKED".to_string(),
            Err(other) => format!("OTHER {other}"),
        };
        println!("PROBE {outcome}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let child = spawn_self("open::second_process_is_locked", &[(PROBE, dir.path())]);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let probe = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child printed no probe line: {stdout}"));
    assert_eq!(probe, "LOCKED");
    drop(store);
}

#[test]
fn newer_format_on_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = crate::raw_sled(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("format", &[6u8])
            .unwrap();
        db.flush().unwrap();
    }
    match SledStore::open(dir.path(), StoreConfig::default()) {
        Err(StoreError::NewerFormat {
            found, supported, ..
        }) => {
            assert_eq!((found, supported), (6, 5));
        }
        other => panic!("expected NewerFormat, got {other:?}"),
    }
    // The refusal released the path: with the format put back, it opens.
    {
        let db = crate::raw_sled(dir.path());
        db.open_tree("meta")
            .unwrap()
            .insert("format", &[5u8])
            .unwrap();
        db.flush().unwrap();
    }
    drop(open(dir.path()));
}
