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
