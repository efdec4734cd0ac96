//! Integration tests of the management API handler.
