//! The backend conformance suite, run against the sled store.

use std::sync::Arc;
use std::time::Duration;

use callout_store::conformance::Harness;
use callout_store::{Backend, SledStore, StoreConfig};

/// A sled store in its own temporary directory, reopened on every `open`.
struct Sled(tempfile::TempDir);

impl Harness for Sled {
    fn open(&self, lease: Duration) -> Arc<dyn Backend> {
        let config = StoreConfig {
            lease,
            ..StoreConfig::default()
        };
        Arc::new(SledStore::open(self.0.path(), config).expect("store opens"))
    }
}

callout_store::conformance_tests!(Sled(tempfile::tempdir().expect("temporary directory")));
