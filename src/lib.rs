//! callout
