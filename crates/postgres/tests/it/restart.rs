//! PostgreSQL restarted under load: on a throwaway cluster of the test's own (so the shared
//! test server, and the tests on it, are not disturbed), stopped the hard way (`pg_ctl -m
//! immediate`, as a crash) and started again while an engine publishes and delivers. Every
//! publish that returned Ok is delivered, the ones that failed said so, and the engine
//! resumes by itself.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_postgres::{PgConfig, PgStore};
use callout_testkit::Receiver;

/// A PostgreSQL cluster of one test: initdb in a temporary directory, a server on 127.0.0.1;
/// stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_root: bool,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = std::env::var("CALLOUT_TEST_POSTGRES_BIN").unwrap_or_else(|_| {
            panic!(
                "CALLOUT_TEST_POSTGRES_BIN is not set: run the PostgreSQL tests under \
                 scripts/with-postgres.sh, which names the server's binaries"
            )
        });
        let dir =
            std::env::temp_dir().join(format!("callout-restart-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        // PostgreSQL refuses to run as root: as root the cluster is the postgres user's.
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let cluster = Cluster {
            bin: PathBuf::from(bin),
            dir,
            port: free_port(),
            as_root,
        };
        if as_root {
            cluster.run("chown", &["postgres:", &cluster.path("")], false);
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.path("data"),
                "-U",
                "callout",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            true,
        );
        cluster.up();
        cluster
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn url(&self) -> String {
        format!("postgres://callout@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `program` (one of PostgreSQL's when `postgres_bin`), as the cluster's owner.
    fn run(&self, program: &str, args: &[&str], postgres_bin: bool) {
        let program = if postgres_bin {
            self.bin.join(program).to_string_lossy().into_owned()
        } else {
            program.to_string()
        };
        let mut command = if self.as_root && postgres_bin {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", &program]);
            command
        } else {
            Command::new(&program)
        };
        let out = command.args(args).output().expect("the command runs");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={}",
            self.port,
            self.path("")
        );
        let (data, log) = (self.path("data"), self.path("server.log"));
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "30", "-o", &options, "start",
            ],
            true,
        );
    }

    /// Stops the server as a crash would: no checkpoint, clients cut off.
    fn crash(&self) {
        let data = self.path("data");
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
            true,
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.path("data");
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]);
            command.arg(self.bin.join("pg_ctl"));
            command
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now (the server binds it a moment later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn a_postgres_restart_under_load_loses_no_acknowledged_publish_and_the_engine_resumes() {
    let cluster = Cluster::start();
    let receiver = Receiver::ok();
    let mut config = PgConfig::new(cluster.url());
    config.schema = "restart".into();
    // Short requests allow a short lease, so a lease whose answer the crash cut off comes
    // back within the test's wait.
    config.lease = Duration::from_secs(10);
    let store = PgStore::open(config).expect("the store opens");
    let engine = Arc::new(
        Engine::builder(Arc::new(store))
            .allow_address("127.0.0.1")
            .timeouts(callout::deliver::Timeouts::all(Duration::from_secs(1)))
            .workers(4)
            .open()
            .expect("the engine opens"),
    );
    engine
        .subscriptions()
        .create(Subscription::new(format!("{}/hook", receiver.url)).events(["contact.*"]))
        .expect("create");

    // One publisher until told to stop, then a last run of publishes after the restart.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (engine, acknowledged, failed, stop) = (
            Arc::clone(&engine),
            Arc::clone(&acknowledged),
            Arc::clone(&failed),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            for n in 0..100_000u64 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                match engine.publish(Event::created("Contact", n.to_string())) {
                    Ok(receipt) if receipt.deliveries.len() == 1 => {
                        acknowledged.lock().expect("ids").insert(n.to_string());
                    }
                    Ok(receipt) => panic!("publish {n} matched {:?}", receipt.deliveries),
                    Err(error) => failed.lock().expect("errors").push(format!("{n}: {error}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    assert!(
        receiver
            .wait_for("/hook", 30, Duration::from_secs(30))
            .len()
            >= 30,
        "deliveries flow before the restart"
    );
    cluster.crash();
    // Down for a while, so publishes and deliveries meet a server that is gone.
    std::thread::sleep(Duration::from_millis(1_500));
    cluster.up();
    let restarted = Instant::now();
    let before = acknowledged.lock().expect("ids").len();
    // Publishes go on after the restart until some have been acknowledged again.
    while acknowledged.lock().expect("ids").len() < before + 50
        && restarted.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("the publisher");
    let acknowledged = acknowledged.lock().expect("ids").clone();
    assert!(
        acknowledged.len() >= before + 50,
        "publishes succeed again after the restart without a host restart"
    );

    // Every acknowledged publish arrives (at least once), the ones cut off by a lease's lost
    // answer after their 10 s lease.
    let arrived = |got: &[callout_testkit::Received]| -> BTreeSet<String> {
        got.iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter_map(|body| body["data"]["id"].as_str().map(str::to_string))
            .collect()
    };
    let got = receiver.wait_until(Duration::from_secs(60), |got| {
        acknowledged.is_subset(&arrived(got))
    });
    let delivered = arrived(&got);
    let missing: Vec<_> = acknowledged.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}; failed publishes: {:?}",
        failed.lock().expect("errors")
    );
    eprintln!(
        "restart: {} publishes acknowledged, {} failed with an error, {} requests received",
        acknowledged.len(),
        failed.lock().expect("errors").len(),
        got.len()
    );
    engine.shutdown(Duration::from_secs(5)).expect("shutdown");
}
