//! The backlog case (issue 18): N deliveries of about 300 B bodies enqueued by an engine that
//! does not deliver, the store reopened, then drained by a delivering engine to a fast local
//! receiver; and for each step its time, the process's RSS and the store's size on disk, beside
//! the goals (RSS <= 64 MB queued and draining, reopen < 1 s, space returned after the drain).
//!
//! `CALLOUT_BACKLOG=1000000 cargo bench --bench backlog` (N defaults to 1,000,000). Each step
//! runs in a child process of this binary, so each RSS is that step's own and not what an
//! earlier step left in the allocator; the receiver runs in the parent, so its memory is in
//! none of them. Bounded: each step stops at `CALLOUT_BACKLOG_LIMIT_S` (default 600 s) and
//! reports how far it got; the parent kills a child that overruns that by a minute.
//! Without `--bench` (as `cargo test --benches` runs it) it does nothing.
//!
//! For trying the engine's memory settings: `CALLOUT_BACKLOG_WORKERS` (`EngineBuilder::workers`),
//! `CALLOUT_BACKLOG_CACHE` (bytes, sled's cache; `EngineBuilder::cache_capacity`), `CALLOUT_BACKLOG_COMPACT_MAX` (deliveries queued at most
//! for a compaction to start; `EngineBuilder::compaction`) and `CALLOUT_BACKLOG_REPORT_S`
//! (seconds between the drain's lines, default 10). The allocator's own settings, such as
//! glibc's `MALLOC_ARENA_MAX`, pass to the children with the environment.

// A bench binary, not a library.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_testkit::RawReceiver;

#[path = "support/measure.rs"]
mod measure;
#[path = "support/mod.rs"]
mod support;
use measure::{dir_bytes, mib, peak_rss_mib, rss_mib};
use support::env_opt;

/// Subscriptions the deliveries are spread over (one event each: chunk size 1).
const SUBSCRIPTIONS: usize = 10;
/// Events per publish while enqueueing.
const BATCH: usize = 1000;
/// With the envelope, event id, entity, action, id and time: bodies of about 300 B.
const PAD: usize = 34;
/// Lines a child prints for the parent to read rather than show.
const RESULT: &str = "#result ";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

fn env_u64(name: &str, default: u64) -> u64 {
    env_opt(name).unwrap_or(default)
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let limit = Duration::from_secs(env_u64("CALLOUT_BACKLOG_LIMIT_S", 600));
    if let Ok(step) = std::env::var("CALLOUT_BACKLOG_STEP") {
        let dir = PathBuf::from(std::env::var("CALLOUT_BACKLOG_STORE").unwrap_or_default());
        let code = match child(&step, &dir, limit) {
            Ok(()) => 0,
            Err(message) => {
                println!("backlog: {step}: {message}");
                1
            }
        };
        std::process::exit(code);
    }
    let n = env_u64("CALLOUT_BACKLOG", 1_000_000);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("store");

    // The drain's receiver: answers at once, counts requests and body bytes, keeps nothing.
    let body_bytes = Arc::new(AtomicU64::new(0));
    let receiver = {
        let body_bytes = Arc::clone(&body_bytes);
        RawReceiver::start_counting(move |mut connection| {
            while let Some(request) = connection.read_request() {
                body_bytes.fetch_add(request.body().len() as u64, Ordering::Relaxed);
                if !connection.write(OK) {
                    return;
                }
            }
        })
    };
    println!(
        "backlog: {n} deliveries of ~300 B bodies over {SUBSCRIPTIONS} subscriptions; store {}",
        dir.display()
    );
    let run = |step: &str| {
        let started = Instant::now();
        let results = spawn(
            step,
            &dir,
            n,
            &receiver.url,
            limit + Duration::from_secs(60),
        );
        let wall = started.elapsed().as_secs_f64();
        let disk = dir_bytes(&dir);
        println!(
            "backlog: {step}: done in {wall:.1} s (process included); disk after {:.1} MB",
            mib(disk)
        );
        (results, disk)
    };
    let (enqueue, disk_queued) = run("enqueue");
    let (reopen, disk_reopened) = run("reopen");
    let (drain, disk_drained) = run("drain");
    let (reopen_after, disk_reopened_after) = run("reopen-again");

    let received = receiver.count() as u64;
    let bodies = body_bytes.load(Ordering::Relaxed);
    let get = |results: &HashMap<String, f64>, key: &str| results.get(key).copied();
    let show = |value: Option<f64>, unit: &str| {
        value.map_or("n/a".to_string(), |v| format!("{v:.2} {unit}"))
    };
    let queued = get(&enqueue, "enqueued").unwrap_or(0.0);
    let delivered = get(&drain, "delivered").unwrap_or(0.0);
    println!("backlog: summary for {queued:.0} queued, {delivered:.0} delivered ({received} received, bodies {:.1} MB, {:.0} B each)",
        mib(bodies), bodies as f64 / received.max(1) as f64);
    let goal = |ok: bool| if ok { "meets" } else { "MISSES" };
    let rss_goal = |value: Option<f64>| goal(value.is_some_and(|v| v <= 64.0));
    let rows = [
        (
            "enqueue time",
            show(get(&enqueue, "enqueue_s"), "s"),
            "".to_string(),
        ),
        (
            "enqueue rate",
            show(get(&enqueue, "enqueue_rate"), "/s"),
            "".to_string(),
        ),
        (
            "RSS after the publish",
            show(get(&enqueue, "rss_mb"), "MB"),
            format!("{} RSS <= 64 MB", rss_goal(get(&enqueue, "rss_mb"))),
        ),
        (
            "reopen time",
            show(get(&reopen, "reopen_s"), "s"),
            format!(
                "{} reopen < 1 s",
                goal(get(&reopen, "reopen_s").is_some_and(|v| v < 1.0))
            ),
        ),
        (
            "RSS after reopen",
            show(get(&reopen, "rss_mb"), "MB"),
            format!("{} RSS <= 64 MB", rss_goal(get(&reopen, "rss_mb"))),
        ),
        (
            "drain rate",
            show(get(&drain, "drain_rate"), "/s"),
            "".to_string(),
        ),
        (
            "peak RSS while draining",
            show(get(&drain, "peak_rss_mb"), "MB"),
            format!("{} RSS <= 64 MB", rss_goal(get(&drain, "peak_rss_mb"))),
        ),
        (
            "disk queued",
            format!("{:.1} MB", mib(disk_queued)),
            format!(
                "x{:.2} the bodies",
                disk_queued as f64 / bodies.max(1) as f64
            ),
        ),
        (
            "disk after reopen",
            format!("{:.1} MB", mib(disk_reopened)),
            "".to_string(),
        ),
        (
            "disk after drain",
            format!("{:.1} MB", mib(disk_drained)),
            format!(
                "{} space returned (x{:.2} of queued)",
                goal(disk_drained * 2 < disk_queued),
                disk_drained as f64 / disk_queued.max(1) as f64
            ),
        ),
        (
            "disk after 2nd reopen",
            format!("{:.1} MB", mib(disk_reopened_after)),
            format!("reopen took {}", show(get(&reopen_after, "reopen_s"), "s")),
        ),
    ];
    for (what, value, against) in rows {
        println!("backlog: {what:<24} {value:>12}  {against}");
    }
}

/// Runs one step in a child process, echoing its lines and returning its `#result` figures;
/// kills it past `limit`.
fn spawn(step: &str, dir: &Path, n: u64, url: &str, limit: Duration) -> HashMap<String, f64> {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .arg("--bench")
        .env("CALLOUT_BACKLOG_STEP", step)
        .env("CALLOUT_BACKLOG_STORE", dir)
        .env("CALLOUT_BACKLOG", n.to_string())
        .env("CALLOUT_BACKLOG_URL", url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn step");
    let stdout = child.stdout.take().expect("child stdout");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut results = HashMap::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line.strip_prefix(RESULT) {
                    Some(figures) => {
                        for pair in figures.split_whitespace() {
                            if let Some((key, value)) = pair.split_once('=') {
                                if let Ok(value) = value.parse() {
                                    results.insert(key.to_string(), value);
                                }
                            }
                        }
                    }
                    None => println!("{line}"),
                }
            }
            done.store(true, Ordering::SeqCst);
            results
        })
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                println!("backlog: {step}: child failed ({status})");
                break;
            }
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > limit => {
                println!("backlog: {step}: killed past {limit:?}");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                println!("backlog: {step}: wait failed: {e}");
                break;
            }
        }
    }
    reader.join().unwrap_or_default()
}

/// Prints the figures the parent reads.
fn results(figures: &[(&str, f64)]) {
    let pairs: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{RESULT}{}", pairs.join(" "));
}

fn child(step: &str, dir: &Path, limit: Duration) -> Result<(), String> {
    let n = env_u64("CALLOUT_BACKLOG", 1_000_000);
    let url = std::env::var("CALLOUT_BACKLOG_URL").unwrap_or_default();
    let builder = || {
        let mut builder = Engine::builder(dir).allow_address("127.0.0.1");
        if let Some(n) = env_opt("CALLOUT_BACKLOG_WORKERS") {
            builder = builder.workers(n as usize);
        }
        if let Some(bytes) = env_opt("CALLOUT_BACKLOG_CACHE") {
            builder = builder.cache_capacity(bytes);
        }
        if let Some(max_queued) = env_opt("CALLOUT_BACKLOG_COMPACT_MAX") {
            builder = builder.compaction(
                callout::store::StoreConfig::default().compact_headroom,
                max_queued,
            );
        }
        builder
    };
    match step {
        "enqueue" => enqueue(builder().deliver(false), (dir, n, &url), limit),
        "reopen" | "reopen-again" => {
            let started = Instant::now();
            let engine = builder()
                .deliver(false)
                .open()
                .map_err(|e| format!("open: {e}"))?;
            let reopen_s = started.elapsed().as_secs_f64();
            let due = engine.stats().map_err(|e| format!("stats: {e}"))?.due;
            let rss = rss_mib();
            println!(
                "backlog: reopen: {reopen_s:.2} s, {due} due, RSS {rss:.1} MB (peak {:.1} MB)",
                peak_rss_mib()
            );
            let _ = engine.shutdown(Duration::from_secs(10));
            results(&[("reopen_s", reopen_s), ("rss_mb", rss), ("due", due as f64)]);
            Ok(())
        }
        "drain" => drain(builder(), dir, limit),
        other => Err(format!("unknown step {other:?}")),
    }
}

fn enqueue(
    builder: callout::EngineBuilder,
    (dir, n, url): (&Path, u64, &str),
    limit: Duration,
) -> Result<(), String> {
    let engine = builder.open().map_err(|e| format!("open: {e}"))?;
    for s in 0..SUBSCRIPTIONS {
        engine
            .subscriptions()
            .create(
                Subscription::new(format!("{url}/hook/{s}"))
                    .events([format!("backlog{s}.*")])
                    .chunk_size(1),
            )
            .map_err(|e| format!("subscription {s}: {e}"))?;
    }
    let pad = "x".repeat(PAD);
    let started = Instant::now();
    let mut enqueued = 0u64;
    while enqueued < n {
        if started.elapsed() > limit {
            println!("backlog: enqueue: stopped at the {limit:?} limit");
            break;
        }
        let count = (n - enqueued).min(BATCH as u64);
        let events = (enqueued..enqueued + count)
            .map(|i| {
                Event::updated(
                    format!("backlog{}", i as usize % SUBSCRIPTIONS),
                    i.to_string(),
                )
                .data(serde_json::json!({"seq": i, "pad": pad}))
                .changed(["pad"])
            })
            .collect();
        engine
            .publish_batch(events)
            .map_err(|e| format!("publish: {e}"))?;
        enqueued += count;
        if enqueued.is_multiple_of(100_000) {
            println!(
                "backlog: enqueue: {enqueued} in {:.1} s, RSS {:.1} MB, disk {:.1} MB",
                started.elapsed().as_secs_f64(),
                rss_mib(),
                mib(dir_bytes(dir))
            );
        }
    }
    let enqueue_s = started.elapsed().as_secs_f64();
    let rss = rss_mib();
    let due = engine.stats().map_err(|e| format!("stats: {e}"))?.due;
    println!(
        "backlog: enqueue: {enqueued} in {enqueue_s:.1} s ({:.0}/s), {due} due, RSS {rss:.1} MB (peak {:.1} MB)",
        enqueued as f64 / enqueue_s.max(1e-9),
        peak_rss_mib()
    );
    let _ = engine.shutdown(Duration::from_secs(10));
    results(&[
        ("enqueued", enqueued as f64),
        ("enqueue_s", enqueue_s),
        ("enqueue_rate", enqueued as f64 / enqueue_s.max(1e-9)),
        ("rss_mb", rss),
    ]);
    Ok(())
}

fn drain(builder: callout::EngineBuilder, dir: &Path, limit: Duration) -> Result<(), String> {
    // RSS sampled every 100 ms from before the open to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !stop.load(Ordering::SeqCst) {
                peak = peak.max(rss_mib());
                std::thread::sleep(Duration::from_millis(100));
            }
            peak.max(rss_mib())
        })
    };
    let report_every = Duration::from_secs(env_u64("CALLOUT_BACKLOG_REPORT_S", 10));
    let started = Instant::now();
    let engine = builder.open().map_err(|e| format!("open: {e}"))?;
    let open_s = started.elapsed().as_secs_f64();
    let mut last_report = Instant::now();
    let mut counts = engine.stats().map_err(|e| format!("stats: {e}"))?;
    println!(
        "backlog: drain: opened in {open_s:.2} s with {} due",
        counts.due
    );
    let mut finished = true;
    while counts.due + counts.in_flight > 0 {
        if started.elapsed() > limit {
            println!("backlog: drain: stopped at the {limit:?} limit");
            finished = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        counts = engine.stats().map_err(|e| format!("stats: {e}"))?;
        if last_report.elapsed() >= report_every {
            last_report = Instant::now();
            println!(
                "backlog: drain: {} delivered in {:.0} s, {} due, RSS {:.1} MB",
                counts.delivered,
                started.elapsed().as_secs_f64(),
                counts.due,
                rss_mib()
            );
        }
    }
    let drain_s = started.elapsed().as_secs_f64();
    // The store compacts once its queue has settled, which an empty one has: up to 10 s for its
    // files to fall to half, so that the disk figure after the drain is the running engine's.
    let emptied = dir_bytes(dir);
    let settled = Instant::now();
    while finished && dir_bytes(dir) > emptied / 2 && settled.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "backlog: drain: disk {:.1} MB when the queue emptied, {:.1} MB {:.1} s later",
        mib(emptied),
        mib(dir_bytes(dir)),
        settled.elapsed().as_secs_f64()
    );
    let _ = engine.shutdown(Duration::from_secs(10));
    drop(engine);
    stop.store(true, Ordering::SeqCst);
    let peak = sampler.join().unwrap_or(0.0);
    let rate = counts.delivered as f64 / drain_s.max(1e-9);
    println!(
        "backlog: drain: {} delivered in {drain_s:.1} s ({rate:.0}/s){}, {} due, {} retrying, {} dead; peak RSS {peak:.1} MB (VmHWM {:.1} MB)",
        counts.delivered,
        if finished { "" } else { " UNFINISHED" },
        counts.due,
        counts.retrying,
        counts.dead,
        peak_rss_mib()
    );
    results(&[
        ("delivered", counts.delivered as f64),
        ("drain_s", drain_s),
        ("drain_rate", rate),
        ("peak_rss_mb", peak),
        ("finished", if finished { 1.0 } else { 0.0 }),
    ]);
    Ok(())
}
