//! The connector chain: ureq's own (CONNECT proxy, TCP, rustls), with TLS handshake failures
//! made recognisable.
//!
//! rustls reports a failed handshake (bad certificate, a peer that does not speak TLS) as an
//! `io::Error` of kind `InvalidData`, which looks like any other garbled response by the time it
//! leaves ureq. Wrapping the TLS stage lets the sender class those as
//! [`ErrorClass::Tls`](crate::ErrorClass::Tls) without depending on rustls itself.

use std::fmt;
use std::io;

use ureq::unversioned::transport::{
    ConnectProxyConnector, ConnectionDetails, Connector, RustlsConnector, TcpConnector, Transport,
};

/// A TLS handshake that failed on the TLS level (not a timeout or a reset).
#[derive(Debug)]
pub(crate) struct TlsFailure(io::Error);

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tls handshake: {}", self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// ureq's rustls connector, marking handshake failures.
#[derive(Debug, Default)]
pub(crate) struct TlsStage(RustlsConnector);

impl<In: Transport> Connector<In> for TlsStage {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        self.0
            .connect(details, chained)
            .map_err(|error| match error {
                ureq::Error::Io(io) if io.kind() == io::ErrorKind::InvalidData => {
                    ureq::Error::Other(Box::new(TlsFailure(io)))
                }
                other => other,
            })
    }
}

/// The chain of ureq's `DefaultConnector` for our features (no SOCKS, rustls only), with the
/// TLS stage wrapped.
pub(crate) fn connector() -> impl Connector<()> {
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(TlsStage::default())
}
