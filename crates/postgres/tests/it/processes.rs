//! Three host processes on one schema: real child processes, each an engine with one worker,
//! driven over stdin. A subscription created through the first is matched by the others; each
//! record's changes are published through different processes in turn; one process is killed
//! with SIGKILL while it holds a delivery in flight. Every acknowledged event arrives, each
//! record's changes in publish order; the one delivery the dead process held comes back only
//! after its lease ends and is the only one sent twice.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::deliver::Timeouts;
use callout::{Engine, Event, Subscription};
use callout_postgres::{PgConfig, PgStore};
use callout_testkit::{changes_in_order, Hold, Received, Receiver, Reply};
use crossbeam_channel::{Receiver as Lines, Sender};

use crate::support::{server_url, Schema};

const CHILD_SCHEMA: &str = "CALLOUT_PG_PROCESSES_CHILD_SCHEMA";
/// Longer than a request may take with [`timeouts`] (the engine refuses a shorter one).
const LEASE: Duration = Duration::from_secs(10);
const RECORDS: u64 = 12;
const CHANGES: u64 = 6;
/// The round during which the receiver holds what arrives, and the third process dies.
const HOLD_ROUND: u64 = 2;

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(1),
        send: Duration::from_secs(1),
        response: Duration::from_secs(5),
        body: Duration::from_secs(1),
    }
}

/// The child's side: an engine on the schema, one worker, obeying lines on stdin:
/// `CREATE <url>` (prints `SUB <id>`), `PUB <record> <change>` (publishes once its
/// subscription is known here, then prints `ACK <record>-<change>`), `QUIT`.
fn child(schema: &str) -> ! {
    let mut config = PgConfig::new(server_url());
    config.schema = schema.to_string();
    config.lease = LEASE;
    let store = PgStore::open(config).expect("child opens the store");
    let engine = Engine::builder(Arc::new(store))
        .allow_address("127.0.0.1")
        .workers(1)
        // The bound holds across the processes (counted in PostgreSQL): three in flight at
        // once, one per process, for the hold below.
        .max_in_flight_per_subscription(3)
        .timeouts(timeouts())
        .open()
        .expect("child opens the engine");
    println!("READY");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["CREATE", url] => {
                let mut sub = Subscription::new(url)
                    .events(["contact.*"])
                    .ordered_by_record(true);
                sub.retry_schedule = Some(vec![0; 10]);
                let sub = engine.subscriptions().create(sub).expect("create");
                println!("SUB {}", sub.id);
            }
            ["PUB", record, change] => {
                let event =
                    Event::updated("Contact", record).event_id(format!("{record}-{change}"));
                // The subscription may not have reached this process yet (its notice on the
                // way): wait until this process's matcher wants the event, within a bound, and
                // publish once (a host event id is remembered even when nothing matched, so a
                // second publish of it would be a duplicate).
                for _ in 0..500 {
                    let wanted = engine.explain(&event).expect("explain");
                    if wanted.iter().any(|(_, verdict)| verdict.is_ok()) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let receipt = engine.publish(event).expect("publish");
                if receipt.deliveries.is_empty() {
                    eprintln!("not matched: {record}-{change} {receipt:?}");
                } else {
                    println!("ACK {record}-{change}");
                }
            }
            ["QUIT"] => break,
            _ => panic!("unknown command {line:?}"),
        }
    }
    let _ = engine.shutdown(Duration::from_secs(5));
    std::process::exit(0)
}

struct Process {
    child: Child,
    stdin: ChildStdin,
}

impl Process {
    fn start(schema: &str, index: usize, lines: Sender<(usize, String)>) -> Process {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "processes::three_processes_share_one_queue_and_survive_a_kill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_SCHEMA, schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send((index, line));
            }
        });
        let stdin = child.stdin.take().expect("stdin");
        Process { child, stdin }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("child reads commands");
    }
}

/// Waits for `count` lines holding `prefix` (from any child), for at most `limit`: what each
/// says from the prefix on.
fn expect(
    lines: &Lines<(usize, String)>,
    prefix: &str,
    count: usize,
    limit: Duration,
) -> Vec<(usize, String)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < count {
        match lines.recv_deadline(deadline) {
            // The first line follows libtest's `test … ...` on the same line.
            Ok((from, line)) => {
                if let Some(at) = line.find(prefix) {
                    got.push((from, line[at..].to_string()));
                }
            }
            Err(_) => panic!("{} of {count} `{prefix}` lines within {limit:?}", got.len()),
        }
    }
    got
}

fn event_id(request: &Received) -> String {
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
    body["data"]["event_id"]
        .as_str()
        .expect("event id")
        .to_string()
}

#[test]
fn three_processes_share_one_queue_and_survive_a_kill() {
    if let Ok(schema) = std::env::var(CHILD_SCHEMA) {
        child(&schema);
    }
    let schema = Schema::new();
    // Once started, the receiver keeps each request until released (at most 4 s, within the
    // response timeout), so each process's one worker stays in its request.
    let hold = Hold::new(Duration::from_secs(4));
    let receiver = {
        let hold = Arc::clone(&hold);
        Receiver::start(move |_, _| {
            hold.keep();
            Reply::status(200)
        })
    };
    let (tx, lines) = crossbeam_channel::unbounded();
    let mut processes: Vec<Process> = (0..3)
        .map(|n| Process::start(&schema.name, n, tx.clone()))
        .collect();
    expect(&lines, "READY", 3, Duration::from_secs(60));
    processes[0].send(&format!("CREATE {}/hook", receiver.url));
    expect(&lines, "SUB ", 1, Duration::from_secs(20));

    let mut acknowledged = Vec::new();
    let mut alive = 3;
    let mut killed_at = None;
    for change in 0..CHANGES {
        if change == HOLD_ROUND {
            // The earlier rounds delivered first, so the workers are free when the hold begins.
            let so_far = acknowledged.clone();
            receiver.wait_until(Duration::from_secs(30), |got| {
                let arrived: std::collections::HashSet<String> = got.iter().map(event_id).collect();
                so_far.iter().all(|id| arrived.contains(id))
            });
            hold.start();
        }
        // Each record's change goes through another process than its previous one.
        for record in 0..RECORDS {
            let through = ((record + change) % alive) as usize;
            processes[through].send(&format!("PUB {record} {change}"));
        }
        let acks = expect(&lines, "ACK ", RECORDS as usize, Duration::from_secs(30));
        acknowledged.extend(acks.into_iter().map(|(_, line)| line[4..].to_string()));
        if change == HOLD_ROUND {
            // Three requests held at once: one worker each, so every process is in one. The
            // third dies holding its lease. (Counted while held: requests received one after
            // another could be two of one process, the first released by its time bound.)
            let three = hold.wait_held(3, Duration::from_secs(20));
            // What arrived (event, client port, how long ago), to tell which process was missing.
            let so_far: Vec<(String, u16, Duration)> = receiver
                .received()
                .iter()
                .map(|r| (event_id(r), r.peer.port(), r.at.elapsed()))
                .collect();
            assert!(
                three,
                "three requests held at once: {} {so_far:?}",
                hold.held()
            );
            let mut third = processes.pop().expect("a third process");
            third.child.kill().expect("SIGKILL");
            third.child.wait().expect("reaped");
            killed_at = Some(Instant::now());
            alive = 2;
            hold.release();
        }
    }
    assert_eq!(
        acknowledged.len() as u64,
        RECORDS * CHANGES,
        "every publish acknowledged"
    );
    // Until every acknowledged event arrived and the dead process's delivery came again (its
    // first request was received, then its process died before it could settle it).
    let got = receiver.wait_until(LEASE * 4, |got| {
        let arrived: std::collections::HashSet<String> = got.iter().map(event_id).collect();
        let messages: std::collections::HashSet<&str> =
            got.iter().map(|r| r.one("webhook-id")).collect();
        acknowledged.iter().all(|id| arrived.contains(id)) && messages.len() < got.len()
    });
    let arrived: std::collections::HashSet<String> = got.iter().map(event_id).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !arrived.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");

    // Each record's changes in publish order, the one sent again included.
    changes_in_order(&got);
    let mut by_message: HashMap<String, Vec<&Received>> = HashMap::new();
    for request in &got {
        by_message
            .entry(request.one("webhook-id").to_string())
            .or_default()
            .push(request);
    }
    // Only the dead process's delivery went twice, and not before its lease ended.
    let twice: Vec<&Vec<&Received>> = by_message.values().filter(|r| r.len() > 1).collect();
    let start = got.first().map(|r| r.at).unwrap_or_else(Instant::now);
    let seen: Vec<(String, Vec<Duration>)> = twice
        .iter()
        .map(|r| (event_id(r[0]), r.iter().map(|x| x.at - start).collect()))
        .collect();
    assert_eq!(
        twice.len(),
        1,
        "one delivery sent twice: {seen:?} (killed at {:?})",
        killed_at.map(|k| k - start)
    );
    let (first, again) = (twice[0][0], twice[0][1]);
    assert_eq!(twice[0].len(), 2);
    assert!(
        again.at.duration_since(first.at) >= LEASE - Duration::from_millis(500),
        "sent again {:?} after the first, before its lease of {LEASE:?} ended",
        again.at.duration_since(first.at)
    );
    assert!(again.at > killed_at.expect("killed"));
    for mut process in processes {
        process.send("QUIT");
        let _ = process.child.wait();
    }
}
