//! Repair: a damaged store's readable records are copied into a new one, what does not read is
//! reported, and the damaged store is left byte for byte as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use callout_core::Subscription;
use callout_store::{History, Queue, Registry, SledStore, StoreConfig, StoreError};

use crate::{attempt, delivery, open, raw_sled};

/// Every file under `dir`, by its path under it, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn sub(name: &str) -> Subscription {
    Subscription::new("https://example.com/hook")
        .name(name)
        .events(["contact.*"])
}

/// A store with subscriptions 1 and 2 (3 deleted), a sequence, remembered event ids, and
/// deliveries: 1 delivered, 2 and 5 due again after a failed attempt, 3 dead, 4 held. Returns
/// the delivery ids in that order.
fn populated(dir: &Path) -> Vec<u64> {
    let store = open(dir);
    for name in ["crm", "billing", "gone"] {
        store.create_subscription(sub(name), 1).unwrap();
    }
    store.delete_subscription(3).unwrap();
    assert_eq!(store.reserve_sequence(1, 5).unwrap(), 1);
    let new = [(1, "e1"), (1, "e2"), (2, "e3"), (2, "e4"), (1, "e5")]
        .map(|(sub, event)| delivery(sub, event, 10));
    let ids = store
        .enqueue(&["evt-a".into(), "evt-b".into()], new.to_vec(), 10)
        .unwrap()
        .delivery_ids;
    let leased = store.lease(10, 10).unwrap();
    let token = |id: u64| leased.iter().find(|l| l.delivery.id == id).unwrap().token;
    store
        .complete(token(ids[0]), attempt(1, 11, "delivered"))
        .unwrap();
    store
        .reschedule(token(ids[1]), 500, attempt(1, 12, "http 500"))
        .unwrap();
    store
        .dead_letter(token(ids[2]), attempt(1, 13, "gone"))
        .unwrap();
    store.release(token(ids[3]), 10).unwrap();
    store
        .reschedule(token(ids[4]), 600, attempt(1, 14, "http 500"))
        .unwrap();
    store.hold_subscription(2).unwrap();
    store.flush().unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.due, counts.held, counts.dead, counts.delivered),
        (2, 1, 1, 1)
    );
    ids
}

/// The key of the due record of delivery `id`, found with sled directly.
fn due_key(queue: &sled::Tree, id: u64) -> sled::IVec {
    queue
        .scan_prefix(b"q")
        .keys()
        .map(Result::unwrap)
        .find(|k| k.len() == 25 && k[17..] == id.to_be_bytes())
        .expect("a due record")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn repair_copies_every_record_that_decodes_and_reports_the_one_that_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("store");
    let ids = populated(&damaged);
    let bad_key = {
        let db = raw_sled(&damaged);
        let queue = db.open_tree("queue").unwrap();
        let k = due_key(&queue, ids[4]);
        // The header and a record cut short: it no longer decodes.
        let value = queue.get(&k).unwrap().unwrap();
        queue.insert(&k, &value[..13]).unwrap();
        db.flush().unwrap();
        k
    };
    let before = files(&damaged);
    let repaired = dir.path().join("repaired");

    let report = SledStore::repair(&damaged, &repaired).unwrap();

    assert_eq!(
        files(&damaged),
        before,
        "the damaged store is byte for byte as it was"
    );
    assert_eq!(report.subscriptions, 2);
    assert_eq!((report.due, report.held, report.dead), (1, 1, 1));
    assert_eq!(report.attempts, 4);
    assert_eq!(report.event_ids, 2);
    assert_eq!(
        report.counters, 2,
        "subscription 1's sequence and delivered count"
    );
    assert_eq!(
        report.next_subscription, 4,
        "deleted subscription 3 stays used"
    );
    assert!(report.next_delivery > ids[4]);
    assert!(!report.is_complete());
    assert_eq!(report.unreadable.len(), 1, "{:?}", report.unreadable);
    let unreadable = &report.unreadable[0];
    assert_eq!(unreadable.place, "queue");
    assert_eq!(unreadable.key.as_deref(), Some(hex(&bad_key).as_str()));
    assert!(!unreadable.reason.is_empty());

    let store = SledStore::open(&repaired, StoreConfig::default()).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.due, counts.held, counts.dead, counts.delivered),
        (1, 1, 1, 1)
    );
    assert_eq!(store.corrupt_keys().unwrap(), [hex(&bad_key)]);
    assert_eq!(
        store.attempts_for_delivery(ids[1]).unwrap(),
        [attempt(1, 12, "http 500")]
    );
    assert_eq!(store.attempts_for_delivery(ids[0]).unwrap().len(), 1);
    assert_eq!(
        store.attempts_for_delivery(ids[4]).unwrap().len(),
        1,
        "an attempt outlives its unreadable delivery"
    );
    assert_eq!(
        store.dead_letters(&Default::default()).unwrap()[0].id,
        ids[2]
    );
    let names: Vec<String> = store
        .list_subscriptions(&Default::default())
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["crm", "billing"]);
    // Nothing is given out twice: ids, sequences, remembered event ids carry on.
    assert_eq!(store.create_subscription(sub("new"), 2).unwrap().id, 4);
    assert_eq!(store.reserve_sequence(1, 1).unwrap(), 6);
    let receipt = store
        .enqueue(&["evt-a".into()], vec![delivery(1, "e6", 20)], 20)
        .unwrap();
    assert_eq!(receipt.duplicate_event_ids, ["evt-a"]);
    let receipt = store.enqueue(&[], vec![delivery(1, "e7", 20)], 20).unwrap();
    assert!(receipt.delivery_ids[0] > ids[4]);
    assert_eq!(store.resume_subscription(2, 30).unwrap(), 1, "still held");
    // The remembered total carries on too: of the two ids remembered, one is past a bound of
    // one (nothing is past its age at 40 ms).
    drop(store);
    let config = StoreConfig {
        dedup_kept: 1,
        ..StoreConfig::default()
    };
    let store = SledStore::open(&repaired, config).unwrap();
    assert_eq!(
        store.prune(40, 100).unwrap(),
        2,
        "evt-a and evt-b, one record"
    );
}

#[test]
fn a_flipped_byte_in_sleds_conf_says_the_store_is_damaged_and_repair_salvages_it() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("store");
    let store = open(&damaged);
    store.enqueue(&[], vec![delivery(1, "e1", 10)], 10).unwrap();
    drop(store);
    // `version: 0.34` becomes `version: 2.34`: sled says the store was "created using
    // pagecache version 2.34" and should be upgraded.
    let conf = damaged.join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"version: 0.")
        .expect("sled's conf names its version")
        + 9;
    bytes[at] = b'2';
    std::fs::write(&conf, &bytes).unwrap();
    let before = files(&damaged);

    let error = SledStore::open(&damaged, StoreConfig::default()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Damaged { path, .. } if *path == damaged),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("is damaged"), "{message}");
    assert!(message.contains("checksum"), "{message}");
    assert!(message.contains("repair --to"), "{message}");
    assert!(!message.contains("pagecache"), "{message}");

    let repaired = dir.path().join("repaired");
    let report = SledStore::repair(&damaged, &repaired).unwrap();
    assert_eq!(files(&damaged), before, "neither open nor repair wrote it");
    assert_eq!(report.due, 1);
    assert_eq!(report.unreadable.len(), 1, "{:?}", report.unreadable);
    assert_eq!(report.unreadable[0].place, "conf");
    let store = SledStore::open(&repaired, StoreConfig::default()).unwrap();
    assert_eq!(store.counts().unwrap().due, 1);
    assert_eq!(store.lease(10, 10).unwrap().len(), 1);
}

#[test]
fn repair_refuses_a_target_in_use_a_store_open_here_and_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("store");
    let store = open(&source);
    let taken = dir.path().join("taken");
    std::fs::create_dir_all(taken.join("something")).unwrap();
    assert!(matches!(
        SledStore::repair(&source, &dir.path().join("new")),
        Err(StoreError::Locked { .. })
    ));
    drop(store);
    match SledStore::repair(&source, &taken) {
        Err(StoreError::TargetNotEmpty { path }) => assert_eq!(path, taken),
        other => panic!("expected TargetNotEmpty, got {other:?}"),
    }
    // A target inside the damaged store would have the copy written into it.
    let before = files(&source);
    let inside = source.join("repaired");
    match SledStore::repair(&source, &inside) {
        Err(StoreError::TargetNotEmpty { path }) => assert_eq!(path, inside),
        other => panic!("expected TargetNotEmpty, got {other:?}"),
    }
    assert_eq!(files(&source), before, "the damaged store is untouched");
    match SledStore::repair(&dir.path().join("nothing"), &dir.path().join("new")) {
        Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(
        !dir.path().join("new").exists(),
        "a refusal creates nothing"
    );
    // An empty directory is a fine target.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(SledStore::repair(&source, &empty).unwrap().is_complete());
}

#[test]
fn a_store_not_even_a_copy_of_which_opens_is_unsalvageable() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("store");
    drop(open(&source));
    // sled keeps large values in `blobs/`: a file in its place stops any open.
    std::fs::remove_dir_all(source.join("blobs")).unwrap();
    std::fs::write(source.join("blobs"), b"not a directory").unwrap();
    match SledStore::repair(&source, &dir.path().join("new")) {
        Err(error @ StoreError::Unsalvageable { .. }) => {
            assert!(error.to_string().contains("cannot be repaired"), "{error}")
        }
        other => panic!("expected Unsalvageable, got {other:?}"),
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["store"], "the copy is removed");
}

#[test]
fn a_compacted_store_is_repaired_from_its_current_generation() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("store");
    let ids = populated(&source);
    {
        let store = open(&source);
        store.compact().unwrap();
        store.compact().unwrap();
    }
    assert!(source.join("gen-2").join("db").is_file());
    let before = files(&source);
    let target = dir.path().join("repaired");
    let report = SledStore::repair(&source, &target).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(files(&source), before, "the store repaired is untouched");
    let repaired = open(&target);
    let counts = repaired.counts().unwrap();
    assert_eq!(
        (counts.due, counts.held, counts.dead, counts.delivered),
        (2, 1, 1, 1)
    );
    assert_eq!(repaired.attempts_for_delivery(ids[0]).unwrap().len(), 1);
    assert!(repaired.get_subscription(2).unwrap().is_some());
}
