//! `callout run`: the engine delivers while this watches the counts, shows progress, and
//! decides when to stop (empty queue, idle, timeout, Ctrl-C).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callout::store::Counts;
use callout::Engine;
use serde_json::json;

use crate::args::RunArgs;
use crate::error::{code, Failure};
use crate::store::{self, Context, SHUTDOWN_GRACE};

/// How often the counts are read.
const TICK: Duration = Duration::from_millis(100);
/// Plain (non-terminal) progress lines are printed at most this often, and only on a change.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Nothing due, nothing in flight.
    Empty,
    /// Deliveries are queued, but nothing happened for --idle: they wait for a later time.
    Waiting,
    Timeout,
    Interrupted,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Empty => "empty",
            Stop::Waiting => "waiting",
            Stop::Timeout => "timeout",
            Stop::Interrupted => "interrupted",
        }
    }
}

pub(crate) fn run(ctx: &Context, args: &RunArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    // The first Ctrl-C asks for a graceful stop; a second one means "now".
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(code::INTERRUPTED);
        }
    })
    .map_err(|e| Failure::failed(format_args!("cannot catch Ctrl-C: {e}")))?;
    let engine = ctx.open_delivering(args.workers.map(usize::from))?;
    let mut progress = Progress {
        tty: !ctx.json && std::io::stdout().is_terminal(),
        json: ctx.json,
        started: Instant::now(),
        baseline: Counts::default(),
        printed_at: None,
        unprinted: false,
    };
    let watched = watch(&engine, args, &interrupted, &mut progress, out);
    if matches!(watched, Ok((Stop::Interrupted, _))) && progress.tty {
        // The progress line is still open; say why nothing seems to happen while in-flight
        // deliveries finish.
        write!(
            out,
            "\nstopping: letting deliveries in flight finish (up to {} s; Ctrl-C again to quit now)",
            SHUTDOWN_GRACE.as_secs()
        )?;
        out.flush()?;
    }
    let closed = store::close(&engine);
    let (stop, counts) = watched?;
    closed?;
    progress.summary(out, stop, &counts)?;
    let unfinished = counts.due + counts.in_flight;
    match stop {
        Stop::Timeout if args.until_empty && unfinished > 0 => Err(Failure::failed(format_args!(
            "timed out with {unfinished} deliveries not yet sent"
        ))),
        Stop::Interrupted if args.until_empty => Err(Failure::new(
            code::INTERRUPTED,
            "interrupted before the queue was empty",
        )),
        _ => Ok(()),
    }
}

/// Reads the counts every tick until a reason to stop; returns it with the last counts.
fn watch(
    engine: &Engine,
    args: &RunArgs,
    interrupted: &AtomicBool,
    progress: &mut Progress,
    out: &mut dyn Write,
) -> Result<(Stop, Counts), Failure> {
    let mut counts = engine.stats()?;
    progress.baseline = counts;
    progress.show(out, &counts, true)?;
    let mut changed_at = Instant::now();
    loop {
        std::thread::sleep(TICK);
        let now = engine.stats()?;
        let changed = now != counts;
        if changed {
            counts = now;
            changed_at = Instant::now();
        }
        progress.show(out, &counts, changed)?;
        if interrupted.load(Ordering::SeqCst) {
            return Ok((Stop::Interrupted, counts));
        }
        if args.until_empty && counts.in_flight == 0 {
            if counts.due == 0 {
                return Ok((Stop::Empty, counts));
            }
            if changed_at.elapsed() >= args.idle {
                return Ok((Stop::Waiting, counts));
            }
        }
        if args
            .timeout
            .is_some_and(|limit| progress.started.elapsed() >= limit)
        {
            return Ok((Stop::Timeout, counts));
        }
    }
}

struct Progress {
    /// One line rewritten in place, instead of a line per change.
    tty: bool,
    /// JSON lines instead of text.
    json: bool,
    started: Instant,
    /// The counts when the run started: delivered and dead are running totals of the store.
    baseline: Counts,
    printed_at: Option<Instant>,
    /// The counts changed since the last plain line.
    unprinted: bool,
}

impl Progress {
    fn show(&mut self, out: &mut dyn Write, counts: &Counts, changed: bool) -> Result<(), Failure> {
        if self.tty {
            write!(out, "\r\x1b[2K{}", self.line(counts))?;
            out.flush()?;
            return Ok(());
        }
        self.unprinted |= changed;
        let due = self.printed_at.is_none_or(|at| at.elapsed() >= PLAIN_EVERY);
        if !(self.unprinted && due) {
            return Ok(());
        }
        self.unprinted = false;
        self.printed_at = Some(Instant::now());
        if self.json {
            writeln!(out, "{}", self.json(counts, None))?;
        } else {
            writeln!(out, "{}", self.line(counts))?;
        }
        Ok(())
    }

    fn line(&self, counts: &Counts) -> String {
        format!(
            "{:>5.1}s  delivered {}  retrying {}  waiting {}  in flight {}  dead {}",
            self.started.elapsed().as_secs_f64(),
            counts.delivered.saturating_sub(self.baseline.delivered),
            counts.retrying,
            counts.due.saturating_sub(counts.retrying),
            counts.in_flight,
            counts.dead.saturating_sub(self.baseline.dead),
        )
    }

    fn json(&self, counts: &Counts, stop: Option<Stop>) -> serde_json::Value {
        let mut line = json!({
            "elapsed_ms": u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "delivered": counts.delivered.saturating_sub(self.baseline.delivered),
            "retrying": counts.retrying,
            "waiting": counts.due.saturating_sub(counts.retrying),
            "in_flight": counts.in_flight,
            "dead": counts.dead.saturating_sub(self.baseline.dead),
            "held": counts.held,
        });
        if let Some(stop) = stop {
            line["stopped"] = json!(stop.name());
        }
        line
    }

    fn summary(&self, out: &mut dyn Write, stop: Stop, counts: &Counts) -> Result<(), Failure> {
        if self.json {
            writeln!(out, "{}", self.json(counts, Some(stop)))?;
            return Ok(());
        }
        if self.tty {
            writeln!(out)?;
        }
        let why = match stop {
            Stop::Empty => "the queue is empty".to_string(),
            Stop::Waiting => format!(
                "{} for a later retry; a later run sends {} when due",
                crate::output::count(counts.due, "delivery waits", "deliveries wait"),
                if counts.due == 1 { "it" } else { "them" }
            ),
            Stop::Timeout => "timed out".to_string(),
            Stop::Interrupted => "interrupted".to_string(),
        };
        let held = match counts.held {
            0 => String::new(),
            n => format!(", {n} held for switched-off subscriptions"),
        };
        writeln!(
            out,
            "stopped ({}): {why}; delivered {}, dead {}, retrying {}, waiting {}, in flight {}{held}, in {:.1} s",
            stop.name(),
            counts.delivered.saturating_sub(self.baseline.delivered),
            counts.dead.saturating_sub(self.baseline.dead),
            counts.retrying,
            counts.due.saturating_sub(counts.retrying),
            counts.in_flight,
            self.started.elapsed().as_secs_f64(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(json: bool) -> Progress {
        Progress {
            tty: false,
            json,
            started: Instant::now(),
            baseline: Counts {
                delivered: 10,
                dead: 2,
                ..Counts::default()
            },
            printed_at: None,
            unprinted: false,
        }
    }

    #[test]
    fn progress_counts_this_run_only() {
        let counts = Counts {
            due: 3,
            retrying: 2,
            in_flight: 1,
            held: 0,
            delivered: 15,
            dead: 2,
        };
        let line = progress(false).line(&counts);
        assert!(
            line.ends_with("delivered 5  retrying 2  waiting 1  in flight 1  dead 0"),
            "{line}"
        );
        let json = progress(true).json(&counts, Some(Stop::Empty));
        assert_eq!(json["delivered"], 5);
        assert_eq!(
            (json["retrying"].clone(), json["waiting"].clone()),
            (json!(2), json!(1))
        );
        assert_eq!(json["stopped"], "empty");
    }

    #[test]
    fn plain_progress_prints_changes_at_most_once_a_second() {
        let mut progress = progress(false);
        let counts = Counts::default();
        let mut out = Vec::new();
        progress.show(&mut out, &counts, true).unwrap();
        progress.show(&mut out, &counts, true).unwrap();
        progress.show(&mut out, &counts, false).unwrap();
        assert_eq!(String::from_utf8_lossy(&out).lines().count(), 1);
        // The change held back is printed once the second has passed, even with no new one.
        progress.printed_at = Some(Instant::now() - PLAIN_EVERY);
        progress.show(&mut out, &counts, false).unwrap();
        progress.show(&mut out, &counts, false).unwrap();
        assert_eq!(String::from_utf8_lossy(&out).lines().count(), 2);
    }
}
