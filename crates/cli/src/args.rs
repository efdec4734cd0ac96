//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Inspect and operate a callout store from the shell.
#[derive(Debug, Parser)]
#[command(name = "callout", version, disable_help_subcommand = true)]
pub(crate) struct Cli {
    /// The store: a directory (the embedded sled store), or a PostgreSQL URL shared by several
    /// instances, `postgres://user:password@host:port/database?schema=NAME` (schema default
    /// `callout`, created on first use).
    #[arg(
        long,
        global = true,
        value_name = "PATH|URL",
        env = "CALLOUT_STORE",
        default_value = "./callout-data"
    )]
    pub(crate) store: PathBuf,

    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Let requests reach this internal address or range (e.g. 127.0.0.1, 10.0.0.0/8), which
    /// the SSRF guard refuses by default. Repeatable. Used by `run`, `create --test` and the
    /// deactivation URLs called on delete and deactivate.
    #[arg(long = "allow", value_name = "ADDR", global = true)]
    pub(crate) allow: Vec<String>,

    /// Pipeliner bodies' `team_space_id`: the space the webhooks belong to. Bodies are made
    /// when events are published, so `publish` is where it counts.
    #[arg(
        long,
        global = true,
        value_name = "ID",
        env = "CALLOUT_PIPELINER_SPACE_ID",
        default_value = ""
    )]
    pub(crate) pipeliner_space_id: String,

    /// Pipeliner bodies' `webhook.application_id` (null without it).
    #[arg(
        long,
        global = true,
        value_name = "ID",
        env = "CALLOUT_PIPELINER_APPLICATION_ID"
    )]
    pub(crate) pipeliner_application_id: Option<String>,

    /// Pipeliner bodies' `webhook.client_id` (null without it).
    #[arg(
        long,
        global = true,
        value_name = "ID",
        env = "CALLOUT_PIPELINER_CLIENT_ID"
    )]
    pub(crate) pipeliner_client_id: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create an empty store (every other command needs an existing one).
    Init,
    /// List, show, create, change and delete subscriptions.
    #[command(subcommand, visible_alias = "subs")]
    Subscriptions(SubscriptionsCommand),
    /// Publish one event, or a batch as JSON lines from a file or stdin.
    Publish(PublishArgs),
    /// Deliver: until the queue is empty (--until-empty) or until Ctrl-C.
    Run(RunArgs),
    /// Serve the management API (callout's REST API and the vendors' webhook endpoints),
    /// /metrics and /health over HTTP, and deliver as `run` does, until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Deliveries by state, in all and per subscription.
    Stats(StatsArgs),
    /// The recorded attempts of a delivery or of a subscription's deliveries.
    Attempts(AttemptsArgs),
    /// List, replay or purge dead letters.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Check a received request's signature, as a receiver would.
    Verify(VerifyArgs),
    /// Copy what still reads of a damaged --store into a new store; the damaged one is left
    /// as it is. Exits 1 if anything could not be read.
    Repair(RepairArgs),
    /// Copy what is live of a sled --store into a fresh directory inside it, giving back the
    /// space sled keeps for removed records (a store does this by itself when its files
    /// outgrow what is live; this is for doing it now).
    Compact,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubscriptionsCommand {
    /// List subscriptions, optionally filtered.
    List(ListArgs),
    /// Show one subscription, in callout's form or a vendor's.
    Show(ShowArgs),
    /// Create a subscription from JSON.
    Create(CreateArgs),
    /// Change a subscription: merge callout JSON into it, or replace it with a vendor's document.
    Update(UpdateArgs),
    /// Delete a subscription (its deactivation URL is called).
    Delete(IdArgs),
    /// Switch a subscription on; its held deliveries are released.
    Activate(IdArgs),
    /// Switch a subscription off (stopped); its deliveries are held.
    Deactivate(IdArgs),
    /// Sign with a new secret; the old one keeps signing beside it for the grace period, then
    /// stops and is dropped.
    RotateSecret(RotateArgs),
}

/// Whose JSON a subscription document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// callout's own form (`callout::Subscription`).
    Callout,
    /// Autotask's REST `<Entity>Webhooks` JSON (needs --entity) or SOAP `<Entity>` XML.
    Autotask,
    /// SuperOffice's `Webhook` document.
    Superoffice,
    /// Pipeliner's webhook registration (comments allowed).
    Pipeliner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StateArg {
    Active,
    Stopped,
    #[value(name = "too_many_errors", alias = "too-many-errors")]
    TooManyErrors,
}

impl From<StateArg> for callout::State {
    fn from(state: StateArg) -> callout::State {
        match state {
            StateArg::Active => callout::State::Active,
            StateArg::Stopped => callout::State::Stopped,
            StateArg::TooManyErrors => callout::State::TooManyErrors,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only subscriptions whose name contains this (ignoring case).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only subscriptions that want this event (`contact.updated`) or have this pattern.
    #[arg(long)]
    pub(crate) event: Option<String>,
    /// Only subscriptions in this state.
    #[arg(long, value_enum)]
    pub(crate) state: Option<StateArg>,
    /// Print the credentials: secrets (with --json) instead of `<redacted>`, URL passwords and
    /// header values instead of `***`.
    #[arg(long)]
    pub(crate) show_secrets: bool,
    /// List them in this vendor's registration shape, as JSON (a vendor's only shape).
    #[arg(long, value_enum, default_value_t = Format::Callout)]
    pub(crate) format: Format,
    /// With --format superoffice: the body of a SuperOffice `GetAllWebhooks` request
    /// (`NameFilter`, `EventFilter`, `StatusFilter`), applied with the options above (`-`: stdin).
    #[arg(long, short, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// With --format superoffice: SuperOffice's `$select`, the comma-separated properties to
    /// keep (the others are nulled out), e.g. `Name,State,Events`.
    #[arg(long, value_name = "FIELDS")]
    pub(crate) select: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The subscription's id.
    pub(crate) id: u64,
    /// Show it in this vendor's registration shape.
    #[arg(long, value_enum, default_value_t = Format::Callout)]
    pub(crate) format: Format,
    /// Print the credentials: secrets instead of `<redacted>`, URL passwords and header values
    /// instead of `***`.
    #[arg(long)]
    pub(crate) show_secrets: bool,
}

/// A JSON document given inline or read from a file.
#[derive(Debug, Args)]
pub(crate) struct DocumentArgs {
    /// The JSON document itself (or use --file).
    #[arg(
        value_name = "JSON",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    pub(crate) document: Option<String>,
    /// Read the JSON document from this file (`-`: stdin).
    #[arg(long, short, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    /// Whose format the document is in.
    #[arg(long, value_enum, default_value_t = Format::Callout)]
    pub(crate) format: Format,
    /// The Autotask endpoint's entity (Company, Contact, ConfigurationItem, Ticket,
    /// TicketNote): needed for a REST document; a SOAP one names it in its `xsi:type`.
    #[arg(long)]
    pub(crate) entity: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    pub(crate) document: DocumentArgs,
    /// Send the target a `test` event first and create only if it answers 200.
    #[arg(long)]
    pub(crate) test: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The subscription's id.
    pub(crate) id: u64,
    #[command(flatten)]
    pub(crate) document: DocumentArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    /// The subscription's id.
    pub(crate) id: u64,
    /// The new secret (without it, one is made: `whsec_...` for Standard Webhooks, a UUID for
    /// Pipeliner, and shown once).
    #[arg(long, env = "CALLOUT_NEW_SECRET", hide_env_values = true)]
    pub(crate) secret: Option<String>,
    /// How long the old secret keeps signing beside the new one (0s: not at all).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::time::parse_duration)]
    pub(crate) grace: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The subscription's id.
    pub(crate) id: u64,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// One event as JSON (`{"entity":"Contact","action":"updated","id":"42",...}`), or use --file.
    #[arg(
        value_name = "EVENT",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    pub(crate) event: Option<String>,
    /// Events as JSON lines (or one JSON array) from this file (`-`: stdin).
    #[arg(long, short, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Stop once nothing is due or in flight. Deliveries waiting for a later retry do not keep
    /// it running: it stops when nothing has happened for --idle.
    #[arg(long)]
    pub(crate) until_empty: bool,
    /// With --until-empty: how long nothing may happen (nothing in flight, no count changing)
    /// before the deliveries still queued are taken as waiting for a later time.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::time::parse_duration)]
    pub(crate) idle: std::time::Duration,
    /// Stop after this long, whatever is left (e.g. 90s, 5m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = crate::time::parse_duration)]
    pub(crate) timeout: Option<std::time::Duration>,
    /// Worker threads sending deliveries [default: 4; 32 on PostgreSQL].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) workers: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the first line printed says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// The credentials table: `credential tenant [name]` per line (Bearer tokens; `user:password`
    /// for Basic and Autotask's UserName/Secret headers). Or the table's text in
    /// $CALLOUT_TOKENS.
    #[arg(long, value_name = "FILE")]
    pub(crate) tokens: Option<std::path::PathBuf>,
    /// Worker threads sending deliveries [default: 4; 32 on PostgreSQL].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) workers: Option<u16>,
    /// Largest request body, in bytes; larger ones are refused with 413 before they are read
    /// whole.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub(crate) body_limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this subscription.
    #[arg(long, value_name = "ID")]
    pub(crate) subscription: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["delivery", "subscription"])))]
pub(crate) struct AttemptsArgs {
    /// Every attempt of this delivery.
    #[arg(long, value_name = "ID")]
    pub(crate) delivery: Option<u64>,
    /// The newest attempts of this subscription's deliveries.
    #[arg(long, value_name = "ID")]
    pub(crate) subscription: Option<u64>,
    /// With --subscription: at most this many attempts.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadCommand {
    /// List dead letters.
    List(DeadListArgs),
    /// Put dead letters back in the queue, due now (the next `run` sends them).
    Replay(DeadSelection),
    /// Delete dead letters for good.
    Purge(PurgeArgs),
}

/// Which dead letters: by subscription and by when they were dead-lettered.
#[derive(Debug, Args)]
pub(crate) struct DeadSelection {
    /// Only this subscription's.
    #[arg(long, value_name = "ID")]
    pub(crate) subscription: Option<u64>,
    /// Dead-lettered at or after this time: RFC 3339 (2025-01-31T12:00:00Z), a date
    /// (2025-01-31, UTC), Unix milliseconds, or a duration ago (30m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub(crate) from: Option<String>,
    /// Dead-lettered before this time (same forms as --from).
    #[arg(long, value_name = "TIME")]
    pub(crate) to: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeadListArgs {
    #[command(flatten)]
    pub(crate) selection: DeadSelection,
    /// Show at most this many.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    pub(crate) selection: DeadSelection,
    /// Really delete them (without it, purge only says how many it would delete).
    #[arg(long)]
    pub(crate) yes: bool,
}

/// A signature profile, as `verify` checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileArg {
    /// Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature.
    Standard,
    /// X-Hook-Signature: sha1=<base64 HMAC-SHA1>.
    Autotask,
    /// X-SuperOffice-Signature: base64 HMAC-SHA256.
    Superoffice,
    /// WebHook-Signature: HMAC-SHA256, hex (or base64 with --encoding).
    Pipeliner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EncodingArg {
    Hex,
    Base64,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The signature scheme the request claims.
    #[arg(long, value_enum)]
    pub(crate) profile: ProfileArg,
    /// The subscription's secret: for standard, whsec_... (checks `v1`) or the whpk_... public
    /// key (checks `v1a`); the Pipeliner signature UUID.
    #[arg(long, env = "CALLOUT_SECRET", hide_env_values = true)]
    pub(crate) secret: String,
    /// A file of the received headers, one `Name: value` a line (a leading request line and
    /// anything after a blank line are ignored), or a JSON object of them.
    #[arg(long, value_name = "PATH")]
    pub(crate) headers: Option<PathBuf>,
    /// One received header, `Name: value`. Repeatable; added to --headers.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub(crate) header: Vec<String>,
    /// The exact body bytes received (`-`: stdin).
    #[arg(long, value_name = "PATH")]
    pub(crate) body: PathBuf,
    /// Pipeliner: how the MAC is written.
    #[arg(long, value_enum, default_value_t = EncodingArg::Hex)]
    pub(crate) encoding: EncodingArg,
    /// Standard: skip the 5-minute replay window, to check a request captured earlier.
    #[arg(long)]
    pub(crate) ignore_timestamp: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RepairArgs {
    /// The new store's directory: absent or empty.
    #[arg(long, value_name = "DIR")]
    pub(crate) to: PathBuf,
}
