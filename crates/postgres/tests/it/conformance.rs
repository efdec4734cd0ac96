//! The backend conformance suite, run against PostgreSQL: the same checks as on sled, each on a
//! schema of its own; a reopen drops the store and opens it again on the same schema.

use std::sync::Arc;
use std::time::Duration;

use callout_store::conformance::Harness;
use callout_store::Backend;

use crate::support::Schema;

struct Pg(Schema);

impl Harness for Pg {
    fn open(&self, lease: Duration) -> Arc<dyn Backend> {
        Arc::new(self.0.open(lease))
    }
}

callout_store::conformance_tests!(Pg(Schema::new()));

/// The turn-taking check of the sled branch that makes leases fair, which the suite's macro
/// does not list yet on this branch (sled here still leases in due order across
/// subscriptions). Remove once `conformance_tests!` runs it.
#[test]
fn leases_take_turns_across_subscriptions_on_postgres() {
    callout_store::conformance::leases_take_turns_across_subscriptions(&Pg(Schema::new()));
}

/// Per-record ordering (one delivery per order key at a time, in enqueue order, retries
/// included), which the suite's macro lists once sled passes it too.
#[test]
fn order_keys_hold_through_failures_on_postgres() {
    callout_store::conformance::order_keys_hold_through_failures(&Pg(Schema::new()));
}
