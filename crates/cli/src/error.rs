//! Why a command failed, as one line for stderr and the exit code that tells a script which
//! kind of failure it was.

use std::fmt::Display;

use callout::store::StoreError;

/// Exit codes; README.md's CLI section lists them for scripts.
pub(crate) mod code {
    /// The command did what was asked.
    pub const OK: i32 = 0;
    /// It failed for another reason: I/O, the store, a signature that does not verify, a
    /// run that timed out with work left.
    pub const FAILED: i32 = 1;
    /// The command line or an input document is wrong (clap also exits 2).
    pub const USAGE: i32 = 2;
    /// The store, subscription or delivery named does not exist.
    pub const NOT_FOUND: i32 = 3;
    /// Another process has the store open.
    pub const IN_USE: i32 = 4;
    /// `run --until-empty` was interrupted before the queue was empty (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

/// A failed command: its exit code and, unless it was already reported, one line for stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    /// `None` when there is nothing left to say (stdout closed by `| head`).
    pub(crate) message: Option<String>,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl Display) -> Failure {
        Failure {
            code,
            message: Some(one_line(&message.to_string())),
        }
    }

    pub(crate) fn failed(message: impl Display) -> Failure {
        Failure::new(code::FAILED, message)
    }

    pub(crate) fn usage(message: impl Display) -> Failure {
        Failure::new(code::USAGE, message)
    }

    pub(crate) fn not_found(message: impl Display) -> Failure {
        Failure::new(code::NOT_FOUND, message)
    }
}

impl From<callout::Error> for Failure {
    fn from(error: callout::Error) -> Failure {
        use callout::Error as E;
        let code = match &error {
            E::NotFound(_)
            | E::Store(StoreError::UnknownSubscription(_) | StoreError::UnknownDelivery(_)) => {
                code::NOT_FOUND
            }
            E::Store(StoreError::Locked { .. }) => code::IN_USE,
            E::Invalid(_) | E::Store(StoreError::Invalid(_)) | E::Deliver(_) => code::USAGE,
            _ => code::FAILED,
        };
        match error {
            // Said in the terms of the command: what the target answered, and that nothing was
            // created.
            E::TestFailed {
                status: Some(status),
                ..
            } => Failure::new(
                code,
                format_args!("the target answered the test event {status}, not 200; not created"),
            ),
            E::TestFailed {
                status: None,
                detail,
            } => Failure::new(
                code,
                format_args!("the test event got no answer ({detail}); not created"),
            ),
            error => Failure::new(code, error),
        }
    }
}

/// Writing to stdout failed. A closed pipe (`callout dead list | head`) is the reader's choice,
/// not an error worth a message.
impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Failure {
                code: code::OK,
                message: None,
            }
        } else {
            Failure::failed(format_args!("cannot write the output: {error}"))
        }
    }
}

/// Error texts from sled, serde or the OS may span lines; the contract is one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\r\n\tc "), "a b c");
    }

    #[test]
    fn engine_errors_map_to_their_exit_codes() {
        let locked = callout::Error::Store(StoreError::Locked {
            path: "/tmp/x".into(),
        });
        assert_eq!(Failure::from(locked).code, code::IN_USE);
        assert_eq!(
            Failure::from(callout::Error::NotFound(7)).code,
            code::NOT_FOUND
        );
        assert_eq!(Failure::from(callout::Error::Poisoned).code, code::FAILED);
    }

    #[test]
    fn a_closed_pipe_is_quiet() {
        let failure = Failure::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!((failure.code, failure.message), (code::OK, None));
    }
}
