//! Power loss, as near as a test can get: a `Durability::Sync` store on an ext4 file system of
//! its own (a loop-mounted image, mounted with `commit=60` so that ext4's own journal commits
//! do not make unsynced writes durable for us). A child process enqueues from several threads,
//! printing each event once its enqueue returned, until it is SIGKILLed; then the file system is
//! shut down with `EXT4_IOC_SHUTDOWN` and `NOLOGFLUSH`, which drops every write not yet made
//! durable (dirty pages and the uncommitted journal) as a power cut would, before it is
//! unmounted and mounted again. Every acknowledged event must be there. The same with one more
//! thread compacting the store every 50 ms, so the cut lands amid copies into a new generation
//! and switches to it. That one shows a compaction loses nothing to a power cut here; it does
//! not show each of its syncs is needed: with any one of them left out (the new generation's
//! files, the directory after the rename, or the new log's per-commit sync) it still passed,
//! since the next compaction's syncs, 50 ms on, and ext4 committing a rename with the next
//! fsync of any file cover for it.
//!
//! What it proves: callout's syncs cover what sled needs on ext4 to keep a flushed write
//! (without the fdatasync of sled's log, the last half second of acknowledged events is lost
//! here). What it does not: a disk that lies about its cache flushes, or the ordering of
//! writes inside a flush that a real power cut can tear (the image keeps what reached the
//! loop device whole).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use callout_store::{Durability, Queue, SledStore, StoreConfig};

use crate::{delivery, spawn_self};

const CHILD_DIR: &str = "CALLOUT_POWER_LOSS_CHILD_DIR";
/// Set in a child that also compacts.
const COMPACTING: &str = "CALLOUT_POWER_LOSS_COMPACTING";
const WRITERS: u64 = 4;
/// `EXT4_IOC_SHUTDOWN`, `_IOR('X', 125, __u32)`, and its flag that drops the journal.
const EXT4_IOC_SHUTDOWN: u32 = 0x8004_587D;
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

fn sync_config() -> StoreConfig {
    StoreConfig {
        durability: Durability::Sync,
        ..StoreConfig::default()
    }
}

/// In the child: enqueue from [`WRITERS`] threads until killed (or 60 s), printing
/// `ACK <event id>` once each enqueue returned; with `compacting`, one more thread compacts
/// every 50 ms, printing `COMPACTED` after each.
fn child(dir: &Path, compacting: bool) {
    let store = SledStore::open(dir, sync_config()).expect("child opens the store");
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        if compacting {
            let store = &store;
            scope.spawn(move || {
                while Instant::now() < deadline {
                    store.compact().expect("compact");
                    println!("COMPACTED");
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        for writer in 0..WRITERS {
            let store = &store;
            scope.spawn(move || {
                for n in 0u64..10_000_000 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let event = format!("evt_{writer}_{n}");
                    store
                        .enqueue(
                            std::slice::from_ref(&event),
                            vec![delivery(n % 4 + 1, &event, 0)],
                            n,
                        )
                        .expect("enqueue");
                    println!("ACK {event}");
                }
            });
        }
    });
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (the power-loss test needs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An ext4 image mounted on a loop device, unmounted when dropped.
struct Mounted {
    image: PathBuf,
    at: PathBuf,
    mounted: bool,
}

impl Mounted {
    fn new(dir: &Path) -> Mounted {
        let image = dir.join("ext4.img");
        let at = dir.join("mnt");
        std::fs::create_dir(&at).unwrap();
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(256 * 1024 * 1024).unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        let mut mounted = Mounted {
            image,
            at,
            mounted: false,
        };
        mounted.mount();
        mounted
    }

    fn mount(&mut self) {
        run(
            "mount",
            &[
                "-o",
                "loop,commit=60",
                self.image.to_str().unwrap(),
                self.at.to_str().unwrap(),
            ],
        );
        self.mounted = true;
    }

    fn umount(&mut self) {
        // A killed child's files close a moment after it is reaped: retry while busy.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = Command::new("umount").arg(&self.at).status();
            if done.is_ok_and(|s| s.success()) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.mounted = false;
    }

    /// Drops every write the file system has not made durable, as a power cut would. The
    /// ioctl is made by Python's `fcntl` (on every machine here), since the workspace forbids
    /// `unsafe` and no tool of e2fsprogs makes it.
    fn cut_power(&self) {
        let script = format!(
            "import fcntl, os, struct; fd = os.open({:?}, os.O_RDONLY); \
             fcntl.ioctl(fd, {EXT4_IOC_SHUTDOWN}, struct.pack('I', {EXT4_GOING_FLAGS_NOLOGFLUSH}))",
            self.at.to_str().unwrap()
        );
        run("python3", &["-c", &script]);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            self.umount();
        }
    }
}

fn trial(number: u64, compacting: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = Mounted::new(dir.path());
    let store_dir = fs.at.join("store");
    let mut child = if compacting {
        spawn_self(
            "power_loss::sync_publishes_survive_a_power_cut_amid_compactions",
            &[(CHILD_DIR, &store_dir), (COMPACTING, Path::new("1"))],
        )
    } else {
        spawn_self(
            "power_loss::sync_publishes_survive_a_power_cut",
            &[(CHILD_DIR, &store_dir)],
        )
    };
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let (compacted_tx, compacted) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, event)) = line.split_once("ACK ") {
                if tx.send(event.to_string()).is_err() {
                    break;
                }
            }
            if line.contains("COMPACTED") {
                let _ = compacted_tx.send(());
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child acknowledges within 30 s");
    if compacting {
        compacted
            .recv_timeout(Duration::from_secs(30))
            .expect("the child compacts within 30 s");
    }
    // Long enough for sled to write many group commits and start new log segments.
    std::thread::sleep(Duration::from_millis(300 + 200 * number));
    child.kill().unwrap();
    child.wait().unwrap();
    fs.cut_power();
    reader.join().unwrap();
    let mut acknowledged = HashSet::from([first]);
    acknowledged.extend(rx.try_iter());
    fs.umount();
    fs.mount();

    let store = SledStore::open(&store_dir, StoreConfig::default()).expect("reopens");
    assert!(store.corrupt_keys().unwrap().is_empty(), "trial {number}");
    let found: HashSet<String> = store
        .lease(u64::MAX / 2, 10_000_000)
        .unwrap()
        .into_iter()
        .flat_map(|l| l.delivery.event_ids)
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "trial {number}: {} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        acknowledged.len() > 10,
        "trial {number}: the child published"
    );
    // An acknowledged publish's event id is remembered: publishing it again is refused.
    let mut acked: Vec<String> = acknowledged.into_iter().collect();
    acked.sort();
    let again = store.enqueue(&acked, Vec::new(), 1).unwrap();
    assert_eq!(
        again.duplicate_event_ids, acked,
        "trial {number}: an acknowledged event id forgotten"
    );
    drop(store);
}

fn trials(compacting: bool) {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(Path::new(&dir), std::env::var_os(COMPACTING).is_some());
        return;
    }
    for number in 0..3 {
        trial(number, compacting);
    }
}

#[test]
fn sync_publishes_survive_a_power_cut() {
    trials(false);
}

#[test]
fn sync_publishes_survive_a_power_cut_amid_compactions() {
    trials(true);
}
