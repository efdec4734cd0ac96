//! The `callout` command: inspect and operate a callout store from the shell.
//!
//! It opens a store directory through [`callout::Engine`], so it reads and writes exactly what
//! an embedding host's engine does, and lets a person or a script manage subscriptions
//! (callout's JSON or a vendor's registration document), publish events, deliver the queue,
//! look at counts, attempts and dead letters, check a received request's signature, and salvage
//! a damaged store (`repair`) or compact one (`compact`), both with the store crate directly,
//! not the engine.
//! Output is a table by default and JSON with `--json`. Every failure is one line on stderr,
//! `callout: <message>`, with an exit code saying which kind (see README.md).
//!
//! The binary only calls [`main`]; keeping the commands in a library lets rustdoc document
//! them without colliding with the root package's library, which is also named `callout`.
#![deny(missing_docs)]

mod args;
mod compact;
mod error;
mod input;
mod inspect;
mod output;
mod publish;
mod repair;
mod run;
mod serve;
mod store;
mod subscriptions;
mod time;
mod verify;

use std::ffi::OsString;
use std::io::Write;

use callout::core::vendor::pipeliner::PipelinerContext;
use clap::error::ErrorKind;
use clap::Parser;

use crate::args::{Cli, Command};
use crate::error::{code, Failure};
use crate::store::Context;

/// Runs the command line `args` (program name first) and returns the process exit code:
/// 0 done, 1 failed, 2 bad command line or input, 3 not found, 4 store in use, 130 interrupted.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    // A panic is a bug, but the user still gets one line rather than a backtrace hint.
    std::panic::set_hook(Box::new(|info| {
        let message = error::one_line(&info.to_string());
        let _ = writeln!(std::io::stderr(), "callout: internal error: {message}");
    }));
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let ctx = Context {
        store: cli.store,
        json: cli.json,
        allow: cli.allow,
        pipeliner: PipelinerContext {
            team_space_id: cli.pipeliner_space_id,
            application_id: cli.pipeliner_application_id,
            client_id: cli.pipeliner_client_id,
        },
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = dispatch(&ctx, &cli.command, &mut out).and_then(|()| Ok(out.flush()?));
    match result {
        Ok(()) => code::OK,
        Err(failure) => {
            if let Some(message) = failure.message {
                let _ = writeln!(std::io::stderr(), "callout: {message}");
            }
            failure.code
        }
    }
}

fn dispatch(ctx: &Context, command: &Command, out: &mut dyn Write) -> Result<(), Failure> {
    match command {
        Command::Init => init(ctx, out),
        Command::Subscriptions(command) => subscriptions::run(ctx, command, out),
        Command::Publish(args) => publish::run(ctx, args, out),
        Command::Run(args) => run::run(ctx, args, out),
        Command::Serve(args) => serve::run(ctx, args, out),
        Command::Stats(args) => inspect::stats(ctx, args, out),
        Command::Attempts(args) => inspect::attempts(ctx, args, out),
        Command::Dead(command) => inspect::dead(ctx, command, out),
        Command::Verify(args) => verify::run(ctx, args, out),
        Command::Repair(args) => repair::run(ctx, args, out),
        Command::Compact => compact::run(ctx, out),
    }
}

fn init(ctx: &Context, out: &mut dyn Write) -> Result<(), Failure> {
    let engine = ctx.create()?;
    let subscriptions = engine.subscriptions().list(&Default::default());
    store::close(&engine)?;
    let subscriptions = subscriptions?.len();
    let path = ctx.shown();
    if ctx.json {
        return output::print_json(
            out,
            &serde_json::json!({"store": path.to_string(), "subscriptions": subscriptions}),
        );
    }
    writeln!(out, "store ready at {path} ({subscriptions} subscriptions)")?;
    Ok(())
}

/// clap's errors span several lines (the error, a tip, the usage); the contract is one line,
/// so keep the error's first paragraph. Help and version are not errors.
fn usage_error(error: &clap::Error) -> i32 {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return code::OK;
    }
    let rendered = error.render().to_string();
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap shows the whole help here; its usage line says what is missing.
        let usage = rendered
            .lines()
            .find_map(|line| line.trim().strip_prefix("Usage: "))
            .unwrap_or("callout <COMMAND>");
        let _ = writeln!(
            std::io::stderr(),
            "callout: incomplete command; usage: {usage} (see `callout --help`)"
        );
        return code::USAGE;
    }
    let first_paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let message = first_paragraph.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let _ = writeln!(
        std::io::stderr(),
        "callout: {message} (see `callout --help`)"
    );
    code::USAGE
}
