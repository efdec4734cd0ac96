//! Soak: deliveries cycled through a steady backlog, beside hostile receivers, with the
//! process's memory, the store's disk and healthy latency printed every window and checked
//! against bounds (issue 18: memory and disk bounded by configuration, not by the backlog).
//!
//! Healthy subscriptions (all but `--hostile-share` of `--subscriptions`) are kept at
//! `--backlog` deliveries due between them: the driver publishes, in batches, as many as have
//! arrived. The hostile ones hang or drip their response; each is kept at most
//! `--hostile-pending` deliveries waiting. A probe subscription, never backlogged, gets one
//! event every `--probe-ms`: its publish-to-arrival time is the healthy latency the p99 bound
//! checks (how long a subscription with nothing queued waits beside the backlog); the bulk
//! subscriptions' latency (mostly time in the queue) is printed beside it.
//!
//! Every `--window` bulk deliveries one line: deliveries, RSS (/proc/self/status VmRSS), store
//! directory size on disk, latencies, counts. At the end: which bounds held; exit 1 if one
//! broke (RSS over `--max-rss-mb` in a window; disk in a later window over `--max-disk-growth`
//! times the first window's; probe p99 over `--max-p99-ms`), 2 if the run itself failed (bad
//! flag, the engine refused, no progress for 60 s, or `--time-limit-s` passed).
//!
//! `scripts/soak.sh [DELIVERIES] [FLAGS]` builds this in release and runs it, or
//! `cargo run --release --example soak -- --deliveries 300000`. Every receiver is on
//! 127.0.0.1, in this process (their few threads and the latency samples of one window are in
//! the RSS it reports).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callout::{Engine, Event, Subscription};
use callout_testkit::RawReceiver;

#[path = "../benches/support/measure.rs"]
mod measure;

/// How long without a single bulk arrival before the run is called stuck.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// Events in one publish of the bulk top-up (well under the default publish limits).
const BATCH: usize = 1000;
/// How long hostile receivers hold a connection; longer than the engine's 30 s response limit.
const HOSTILE_HOLD: Duration = Duration::from_secs(90);
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// The flags, with their defaults.
#[derive(Debug, Clone)]
struct Options {
    deliveries: u64,
    backlog: u64,
    subscriptions: usize,
    hostile_share: f64,
    hostile_pending: u64,
    window: u64,
    probe_ms: u64,
    pad: usize,
    max_rss_mb: f64,
    max_disk_growth: f64,
    max_p99_ms: f64,
    time_limit_s: Option<u64>,
    dir: Option<PathBuf>,
    /// The store's compaction headroom (`EngineBuilder::compaction`; 0 turns it off), or the
    /// engine's default.
    compact_headroom_mb: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            deliveries: 300_000,
            backlog: 10_000,
            subscriptions: 20,
            hostile_share: 0.1,
            hostile_pending: 200,
            window: 100_000,
            probe_ms: 50,
            // With the envelope, event id, entity, action, id and time: about 300 B bodies.
            pad: 30,
            max_rss_mb: 64.0,
            max_disk_growth: 1.2,
            max_p99_ms: 1000.0,
            time_limit_s: None,
            dir: None,
            compact_headroom_mb: None,
        }
    }
}

const USAGE: &str = "usage: soak [--deliveries N] [--backlog N] [--subscriptions N] \
[--hostile-share F] [--hostile-pending N] [--window N] [--probe-ms MS] [--pad BYTES] \
[--max-rss-mb MB] [--max-disk-growth F] [--max-p99-ms MS] [--time-limit-s S] [--dir PATH] \
[--compact-headroom-mb MB]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    fn value<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
        let value = value.ok_or(format!("{flag}: needs a value"))?;
        value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a valid value"))
    }
    let mut options = Options::default();
    while let Some(flag) = args.next() {
        let next = args.next();
        match flag.as_str() {
            "--deliveries" => options.deliveries = value(&flag, next)?,
            "--backlog" => options.backlog = value(&flag, next)?,
            "--subscriptions" => options.subscriptions = value(&flag, next)?,
            "--hostile-share" => options.hostile_share = value(&flag, next)?,
            "--hostile-pending" => options.hostile_pending = value(&flag, next)?,
            "--window" => options.window = value(&flag, next)?,
            "--probe-ms" => options.probe_ms = value(&flag, next)?,
            "--pad" => options.pad = value(&flag, next)?,
            "--max-rss-mb" => options.max_rss_mb = value(&flag, next)?,
            "--max-disk-growth" => options.max_disk_growth = value(&flag, next)?,
            "--max-p99-ms" => options.max_p99_ms = value(&flag, next)?,
            "--time-limit-s" => options.time_limit_s = Some(value(&flag, next)?),
            "--dir" => options.dir = Some(value(&flag, next)?),
            "--compact-headroom-mb" => options.compact_headroom_mb = Some(value(&flag, next)?),
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    let hostile = hostile_count(&options);
    if options.deliveries == 0 || options.window == 0 || options.backlog == 0 {
        return Err("--deliveries, --window and --backlog: must be at least 1".into());
    }
    if !(0.0..1.0).contains(&options.hostile_share) {
        return Err(format!(
            "--hostile-share: {} is outside 0.0..1.0",
            options.hostile_share
        ));
    }
    if options.subscriptions <= hostile {
        return Err(format!(
            "--subscriptions: {} leaves no healthy subscription beside {hostile} hostile",
            options.subscriptions
        ));
    }
    Ok(options)
}

fn hostile_count(options: &Options) -> usize {
    let share = options.subscriptions as f64 * options.hostile_share;
    if share > 0.0 {
        (share.round() as usize).max(1)
    } else {
        0
    }
}

/// Publish-to-arrival times seen by one receiver: the samples of the current window (in
/// microseconds; taken and cleared at each report) and the arrivals so far.
struct Arrivals {
    epoch: Instant,
    window: Mutex<Vec<u32>>,
    count: AtomicU64,
    body_bytes: AtomicU64,
}

impl Arrivals {
    fn new(epoch: Instant) -> Arc<Arrivals> {
        Arc::new(Arrivals {
            epoch,
            window: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        })
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The window's samples, sorted; a new window starts.
    fn take(&self) -> Vec<u32> {
        let mut samples = self
            .window
            .lock()
            .map(|mut window| std::mem::take(&mut *window))
            .unwrap_or_default();
        samples.sort_unstable();
        samples
    }
}

/// A receiver that answers 200 at once on kept-alive connections and records, for each event
/// in a body, the time since its `sent_us` (microseconds since the run's epoch). It keeps no
/// requests: a soak sends too many.
fn timing_receiver(arrivals: Arc<Arrivals>) -> RawReceiver {
    RawReceiver::start_counting(move |mut connection| {
        while let Some(request) = connection.read_request() {
            let now = arrivals.epoch.elapsed().as_micros() as u64;
            let sent = sent_times(request.body());
            arrivals
                .count
                .fetch_add(sent.len() as u64, Ordering::SeqCst);
            let bytes = request.body().len() as u64;
            arrivals.body_bytes.fetch_add(bytes, Ordering::Relaxed);
            if let Ok(mut window) = arrivals.window.lock() {
                window.extend(sent.iter().map(|at| now.saturating_sub(*at) as u32));
            }
            if !connection.write(OK) {
                return;
            }
        }
    })
}

/// Every `"sent_us":<digits>` in a body: a byte scan, so timing a delivery costs less than
/// parsing its JSON.
fn sent_times(body: &[u8]) -> Vec<u64> {
    const KEY: &[u8] = b"\"sent_us\":";
    let mut times = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(time) = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
        {
            times.push(time);
        }
    }
    times
}

/// A receiver that reads the request and then says nothing until the engine gives up.
fn hanging_receiver() -> RawReceiver {
    RawReceiver::start_counting(|mut connection| {
        if connection.read_request().is_some() {
            connection.pause(HOSTILE_HOLD);
        }
    })
}

/// A receiver that starts a response and then drips a header byte every half second.
fn dripping_receiver() -> RawReceiver {
    RawReceiver::start_counting(|mut connection| {
        if connection.read_request().is_none() {
            return;
        }
        if connection.write(b"HTTP/1.1 200 OK\r\nX-Drip: ") {
            connection.repeat(b"a", Duration::from_millis(500), HOSTILE_HOLD);
        }
    })
}

fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    f64::from(sorted[((last as f64) * q).round() as usize]) / 1000.0
}

/// One window's figures.
struct Window {
    deliveries: u64,
    rss_mb: f64,
    disk: u64,
    probe_p99_ms: f64,
}

/// What the run found: each window, and the bounds broken.
struct Soak {
    windows: Vec<Window>,
    broken: Vec<String>,
    /// The bulk bodies' mean size, in bytes.
    body_mean: f64,
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(soak) => verdict(&options, &soak),
        Err(message) => {
            eprintln!("soak: FAILED: {message}");
            ExitCode::from(2)
        }
    }
}

fn verdict(options: &Options, soak: &Soak) -> ExitCode {
    let first = soak.windows.first();
    let last = soak.windows.last();
    if let (Some(first), Some(last)) = (first, last) {
        let peak = soak.windows.iter().map(|w| w.rss_mb).fold(0.0, f64::max);
        let worst = soak
            .windows
            .iter()
            .map(|w| w.probe_p99_ms)
            .fold(0.0, f64::max);
        println!(
            "soak: {} deliveries of {:.0} B bodies; RSS peak {peak:.1} MB (bound {}); disk {:.1} MB after {} -> \
             {:.1} MB after {} (x{:.2}, bound x{}); probe p99 worst {worst:.1} ms (bound {})",
            last.deliveries,
            soak.body_mean,
            options.max_rss_mb,
            measure::mib(first.disk),
            first.deliveries,
            measure::mib(last.disk),
            last.deliveries,
            last.disk as f64 / first.disk.max(1) as f64,
            options.max_disk_growth,
            options.max_p99_ms,
        );
    }
    if soak.broken.is_empty() {
        println!("soak: every bound held");
        ExitCode::SUCCESS
    } else {
        for broken in &soak.broken {
            println!("soak: BOUND BROKEN: {broken}");
        }
        ExitCode::from(1)
    }
}

fn run(options: &Options) -> Result<Soak, String> {
    let epoch = Instant::now();
    let limit = Duration::from_secs(
        options
            .time_limit_s
            .unwrap_or(120 + options.deliveries / 1000),
    );
    let (bulk, probe) = (Arrivals::new(epoch), Arrivals::new(epoch));
    let bulk_receiver = timing_receiver(Arc::clone(&bulk));
    let probe_receiver = timing_receiver(Arc::clone(&probe));
    let (hanging, dripping) = (hanging_receiver(), dripping_receiver());

    let temp = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().join("store"));
    let mut builder = Engine::builder(&dir).allow_address("127.0.0.1");
    if let Some(headroom) = options.compact_headroom_mb {
        builder = builder.compaction(headroom * 1024 * 1024, 100_000);
    }
    let engine = builder
        .open()
        .map_err(|e| format!("engine open at {}: {e}", dir.display()))?;
    let create = |url: String, entity: &str| {
        engine
            .subscriptions()
            .create(
                Subscription::new(url)
                    .events([format!("{entity}.*")])
                    .chunk_size(1),
            )
            .map(|sub| sub.id)
            .map_err(|e| format!("subscription for {entity}: {e}"))
    };
    let hostile = hostile_count(options);
    let mut hostile_ids = Vec::new();
    for n in 0..hostile {
        let url = match n % 2 {
            0 => format!("{}/hang/{n}", hanging.url),
            _ => format!("{}/drip/{n}", dripping.url),
        };
        hostile_ids.push((create(url, &format!("hostile{n}"))?, format!("hostile{n}")));
    }
    let healthy = options.subscriptions - hostile;
    for n in 0..healthy {
        create(
            format!("{}/bulk/{n}", bulk_receiver.url),
            &format!("bulk{n}"),
        )?;
    }
    create(format!("{}/probe", probe_receiver.url), "probe")?;
    println!(
        "soak: {} deliveries through a backlog of {} over {healthy} healthy subscriptions, \
         {hostile} hostile (hang/drip, up to {} waiting each), a probe every {} ms; store {}",
        options.deliveries,
        options.backlog,
        options.hostile_pending,
        options.probe_ms,
        dir.display()
    );

    let pad = "x".repeat(options.pad);
    let event = |entity: String, seq: u64| {
        let sent_us = epoch.elapsed().as_micros() as u64;
        Event::updated(entity, seq.to_string())
            .data(serde_json::json!({"sent_us": sent_us, "pad": pad}))
            .changed(["pad"])
    };
    let publish = |events: Vec<Event>| {
        engine
            .publish_batch(events)
            .map_err(|e| format!("publish: {e}"))
    };

    let mut soak = Soak {
        windows: Vec::new(),
        broken: Vec::new(),
        body_mean: 0.0,
    };
    let (mut published, mut seq) = (0u64, 0u64);
    let mut next_probe = Instant::now();
    let probe_gap = Duration::from_millis(options.probe_ms.max(1));
    let (mut last_count, mut last_progress) = (0u64, Instant::now());
    let mut window_started = (Instant::now(), 0u64);
    let mut next_mark = options.window.min(options.deliveries);
    loop {
        let arrived = bulk.count();
        if arrived >= next_mark {
            let window = report(&engine, &dir, (&bulk, &probe), arrived, window_started)?;
            check(options, &mut soak, &window);
            soak.windows.push(window);
            window_started = (Instant::now(), arrived);
            if arrived >= options.deliveries {
                break;
            }
            next_mark = (next_mark + options.window).min(options.deliveries);
        }
        if arrived > last_count {
            (last_count, last_progress) = (arrived, Instant::now());
        } else if last_progress.elapsed() > STALL_LIMIT {
            return Err(format!(
                "no bulk delivery arrived for {STALL_LIMIT:?} ({arrived} so far)"
            ));
        }
        if epoch.elapsed() > limit {
            return Err(format!(
                "time limit {limit:?} passed after {arrived} of {} deliveries",
                options.deliveries
            ));
        }

        let mut worked = false;
        if Instant::now() >= next_probe {
            seq += 1;
            publish(vec![event("probe".into(), seq)])?;
            next_probe += probe_gap;
            worked = true;
        }
        // Publish no more than the run needs: the last window must end with a drained tail,
        // not a backlog left behind.
        let wanted = options
            .backlog
            .min(options.deliveries.saturating_sub(published));
        let backlog = published - arrived.min(published);
        if backlog < wanted && published < options.deliveries {
            let count = (wanted - backlog).min(BATCH as u64) as usize;
            let mut events = Vec::with_capacity(count + hostile);
            for _ in 0..count {
                seq += 1;
                events.push(event(format!("bulk{}", published % healthy as u64), seq));
                published += 1;
            }
            for (id, entity) in &hostile_ids {
                let counts = engine
                    .subscription_stats(*id)
                    .map_err(|e| format!("stats: {e}"))?;
                if counts.due + counts.in_flight + counts.held < options.hostile_pending {
                    seq += 1;
                    events.push(event(entity.clone(), seq));
                }
            }
            publish(events)?;
            worked = true;
        }
        if !worked {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    soak.body_mean = bulk.body_bytes.load(Ordering::Relaxed) as f64 / bulk.count().max(1) as f64;
    let _ = engine.shutdown(Duration::from_secs(5));
    drop(engine);
    // The hostile receivers' held connections end with them.
    drop((hanging, dripping, bulk_receiver, probe_receiver));
    Ok(soak)
}

/// Prints one window's line and returns its figures.
fn report(
    engine: &Engine,
    dir: &std::path::Path,
    (bulk, probe): (&Arrivals, &Arrivals),
    arrived: u64,
    (started, at_start): (Instant, u64),
) -> Result<Window, String> {
    let counts = engine.stats().map_err(|e| format!("stats: {e}"))?;
    let (bulk_samples, probe_samples) = (bulk.take(), probe.take());
    let window = Window {
        deliveries: arrived,
        rss_mb: measure::rss_mib(),
        disk: measure::dir_bytes(dir),
        probe_p99_ms: quantile_ms(&probe_samples, 0.99),
    };
    let rate = (arrived - at_start) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "soak: {arrived:>9} deliveries {rate:>6.0}/s  rss {:>6.1} MB  disk {:>7.1} MB  \
         probe p50 {:>6.1} ms p99 {:>7.1} ms max {:>7.1} ms ({})  bulk p50 {:>7.1} ms \
         p99 {:>7.1} ms  due {} in_flight {} retrying {} held {} delivered {} dead {}",
        window.rss_mb,
        measure::mib(window.disk),
        quantile_ms(&probe_samples, 0.5),
        window.probe_p99_ms,
        quantile_ms(&probe_samples, 1.0),
        probe_samples.len(),
        quantile_ms(&bulk_samples, 0.5),
        quantile_ms(&bulk_samples, 0.99),
        counts.due,
        counts.in_flight,
        counts.retrying,
        counts.held,
        counts.delivered,
        counts.dead,
    );
    Ok(window)
}

/// Records the bounds `window` breaks.
fn check(options: &Options, soak: &mut Soak, window: &Window) {
    let at = window.deliveries;
    if window.rss_mb > options.max_rss_mb {
        soak.broken.push(format!(
            "--max-rss-mb: RSS {:.1} MB at {at} deliveries",
            window.rss_mb
        ));
    }
    if let Some(first) = soak.windows.first() {
        let growth = window.disk as f64 / first.disk.max(1) as f64;
        if growth > options.max_disk_growth {
            soak.broken.push(format!(
                "--max-disk-growth: disk {:.1} MB at {at} deliveries is x{growth:.2} the {:.1} MB \
                 at {}",
                measure::mib(window.disk),
                measure::mib(first.disk),
                first.deliveries
            ));
        }
    }
    if window.probe_p99_ms > options.max_p99_ms {
        soak.broken.push(format!(
            "--max-p99-ms: probe p99 {:.1} ms in the window ending at {at} deliveries",
            window.probe_p99_ms
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_times_finds_every_event_in_a_body() {
        let body = br#"{"data":[{"fields":{"pad":"x","sent_us":12}},{"fields":{"sent_us":345}}]}"#;
        assert_eq!(sent_times(body), [12, 345]);
        assert!(sent_times(b"{}").is_empty());
    }

    #[test]
    fn flags_are_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let options = parse(args("--deliveries 5000 --max-rss-mb 80").into_iter()).unwrap();
        assert_eq!((options.deliveries, options.max_rss_mb), (5000, 80.0));
        assert!(parse(args("--deliveries x").into_iter())
            .unwrap_err()
            .contains("--deliveries"));
        assert!(parse(args("--subscriptions 1 --hostile-share 0.5").into_iter()).is_err());
        assert!(parse(args("--bogus 1").into_iter()).is_err());
    }
}
