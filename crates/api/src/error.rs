//! The crate's one error type: what can go wrong setting the API up. Requests never fail with
//! it; they get an HTTP response in their dialect's error shape (`problem.rs`).

/// Why the API could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line of a credentials table ([`crate::Tokens::parse`]) is not `credential tenant
    /// [name]`. The credential itself is never echoed.
    #[error("tokens line {line}: {reason}")]
    Tokens {
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}
