//! Tests of the real `callout` binary against temporary stores and a receiver on 127.0.0.1.

mod compact;
mod delivery;
mod errors;
mod postgres;
mod registration;
mod repair;
mod secrets;
mod serve;
mod subscriptions;
mod verify;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// No command of these tests should take this long; one that does is killed and fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// A temporary store and the commands run against it.
pub(crate) struct Store {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl Store {
    /// A new, initialised store.
    pub(crate) fn new() -> Store {
        let store = Store::uninitialised();
        store.ok(&["init"]);
        store
    }

    /// A path where no store exists yet.
    pub(crate) fn uninitialised() -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        Store { _dir: dir, path }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callout"));
        command
            .arg("--store")
            .arg(&self.path)
            .args(args)
            .env_remove("CALLOUT_STORE")
            .env_remove("CALLOUT_SECRET")
            .env_remove("CALLOUT_TOKENS")
            .env_remove("CALLOUT_NEW_SECRET")
            .env_remove("CALLOUT_PIPELINER_SPACE_ID")
            .env_remove("CALLOUT_PIPELINER_APPLICATION_ID")
            .env_remove("CALLOUT_PIPELINER_CLIENT_ID")
            .env_remove("RUST_BACKTRACE");
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, b"")
    }

    pub(crate) fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Ran {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start callout");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).expect("write stdin");
        }
        finish(child, COMMAND_LIMIT)
    }

    /// Runs a command that must succeed; returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args);
        assert_eq!(ran.code, 0, "{args:?} failed: {ran:?}");
        ran.stdout
    }

    /// Runs a command with --json that must succeed; returns its parsed stdout.
    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let stdout = self.ok(&with_json);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }

    /// Runs a command that must fail with `code`; returns its one line of stderr.
    pub(crate) fn fails(&self, args: &[&str], code: i32) -> String {
        assert_one_line_failure(self.run(args), code, args)
    }
}

/// A failure is exactly one `callout: ...` line on stderr, the expected code, and no panic.
pub(crate) fn assert_one_line_failure(ran: Ran, code: i32, what: &[&str]) -> String {
    assert_eq!(ran.code, code, "{what:?}: {ran:?}");
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what:?}: stderr is not one line: {ran:?}");
    assert!(lines[0].starts_with("callout: "), "{what:?}: {ran:?}");
    assert!(
        !lines[0].contains("panicked") && !lines[0].contains("backtrace"),
        "{what:?}: {ran:?}"
    );
    lines[0].to_string()
}

/// Waits for `child` at most `limit` (killing it then), collecting its output.
pub(crate) fn finish(mut child: Child, limit: Duration) -> Ran {
    // A pipe the caller took already reads as empty here.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for callout") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("callout ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// A standard-profile subscription to `url`, signed with the Standard Webhooks test secret.
pub(crate) fn subscription(url: &str, extra: serde_json::Value) -> String {
    let mut document = serde_json::json!({
        "name": "crm contacts",
        "target_url": url,
        "events": ["contact.*"],
        "secrets": [SECRET],
    });
    if let (Some(document), serde_json::Value::Object(extra)) = (document.as_object_mut(), extra) {
        document.extend(extra);
    }
    document.to_string()
}

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) const CONTACT_CREATED: &str =
    r#"{"entity":"Contact","action":"created","id":"42","data":{"email1":"ada@example.com"}}"#;
