//! The connector chain: ureq's own (CONNECT proxy, TCP, rustls), with TLS handshake failures
//! made recognisable, and each request written out in one piece.
//!
//! rustls reports a failed handshake (bad certificate, a peer that does not speak TLS) as an
//! `io::Error` of kind `InvalidData`, which looks like any other garbled response by the time it
//! leaves ureq. Wrapping the TLS stage lets the sender class those as
//! [`ErrorClass::Tls`](crate::ErrorClass::Tls) without depending on rustls itself.
//!
//! ureq hands its transport the request head and then the body as two writes, so a webhook
//! costs two `send`s, two TCP segments (two TLS records) and often two wake-ups of the receiver.
//! [`Coalescing`] holds what ureq writes until ureq turns to read the response, then writes it
//! at once: on loopback that cut the CPU per request by about 30% (docs/BENCHMARKS.md).

use std::fmt;
use std::io;

use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, LazyBuffers, NextTimeout,
    RustlsConnector, TcpConnector, Transport,
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
/// TLS stage wrapped and requests coalesced on top. (ureq opens a CONNECT proxy's connection
/// through the whole chain, so a proxied connection has two coalescing layers: it works, at the
/// cost of a second pair of buffers.)
pub(crate) fn connector() -> impl Connector<()> {
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(TlsStage::default())
        .chain(CoalescingStage)
}

/// Wraps each connection's transport in [`Coalescing`].
#[derive(Debug)]
pub(crate) struct CoalescingStage;

impl<In: Transport> Connector<In> for CoalescingStage {
    type Out = Coalescing<In>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let (input, output) = (
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(chained.map(|inner| Coalescing {
            inner,
            buffers: LazyBuffers::new(input, output.max(2 * FLUSH_BELOW)),
            pending: 0,
            timeout: None,
        }))
    }
}

/// Held output is written once less than this much room is left behind it, so a large body
/// still goes out in large pieces and ureq always has room to write into.
const FLUSH_BELOW: usize = 16 * 1024;

/// A transport that gathers ureq's writes and sends them when ureq waits for input (or its
/// buffer is nearly full). ureq reads and writes through this layer's own buffers; output is
/// copied into the inner transport's buffer on the way out, input out of it on the way in.
///
/// ureq reads input it already has without waiting (`maybe_await_input`, which it calls through
/// a `Box<dyn Transport>` that does not pass it on, so this layer cannot flush there). With a
/// request held, that only happens after an `Expect: 100-continue`, a header the sender never
/// sends (it is reserved; a test checks a custom one is dropped).
#[derive(Debug)]
pub(crate) struct Coalescing<T> {
    inner: T,
    buffers: LazyBuffers,
    /// Bytes at the start of the output buffer written by ureq and not yet sent.
    pending: usize,
    /// The timeout of the last held write (ureq's current phase, e.g. sending the body): it
    /// governs sending what is held.
    timeout: Option<NextTimeout>,
}

impl<T: Transport> Coalescing<T> {
    fn send_pending(&mut self) -> Result<(), ureq::Error> {
        let (Some(timeout), pending) = (self.timeout.take(), std::mem::take(&mut self.pending))
        else {
            return Ok(());
        };
        let held = &self.buffers.output()[..pending];
        for piece in held.chunks(self.inner.buffers().output().len().max(1)) {
            self.inner.buffers().output()[..piece.len()].copy_from_slice(piece);
            self.inner.transmit_output(piece.len(), timeout)?;
        }
        Ok(())
    }

    /// Moves what the inner transport has read into this layer's input buffer.
    fn take_input(&mut self) -> usize {
        let (from, to) = (
            self.inner.buffers().input(),
            self.buffers.input_append_buf(),
        );
        let amount = from.len().min(to.len());
        to[..amount].copy_from_slice(&from[..amount]);
        self.buffers.input_appended(amount);
        self.inner.buffers().input_consume(amount);
        amount
    }
}

impl<T: Transport> Buffers for Coalescing<T> {
    fn output(&mut self) -> &mut [u8] {
        &mut self.buffers.output()[self.pending..]
    }

    fn input(&self) -> &[u8] {
        self.buffers.input()
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.buffers.input_append_buf()
    }

    fn input_appended(&mut self, amount: usize) {
        self.buffers.input_appended(amount);
    }

    fn input_consume(&mut self, amount: usize) {
        self.buffers.input_consume(amount);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        let (tmp, output) = self.buffers.tmp_and_output();
        (tmp, &mut output[self.pending..])
    }

    fn can_use_input(&self) -> bool {
        self.buffers.can_use_input()
    }
}

impl<T: Transport> Transport for Coalescing<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.pending += amount;
        self.timeout = Some(timeout);
        if self.buffers.output().len() - self.pending < FLUSH_BELOW {
            self.send_pending()?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.send_pending()?;
        // Input the inner transport read but this layer had no room for is used first.
        if self.inner.buffers().input().is_empty() && !self.inner.await_input(timeout)? {
            return Ok(false);
        }
        Ok(self.take_input() > 0)
    }

    // Not open for another request while output is held, or while the inner transport holds
    // input this layer had no room for: ureq's own check for stray bytes sees only this layer's.
    fn is_open(&mut self) -> bool {
        self.pending == 0 && self.inner.buffers().input().is_empty() && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use callout_testkit::{Receiver, Reply};
    use ureq::unversioned::resolver::DefaultResolver;

    /// Counts the writes that reach the socket.
    #[derive(Debug)]
    struct Counted<T> {
        inner: T,
        writes: Arc<AtomicUsize>,
    }

    impl<T: Transport> Transport for Counted<T> {
        fn buffers(&mut self) -> &mut dyn Buffers {
            self.inner.buffers()
        }

        fn transmit_output(
            &mut self,
            amount: usize,
            timeout: NextTimeout,
        ) -> Result<(), ureq::Error> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.transmit_output(amount, timeout)
        }

        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
            self.inner.await_input(timeout)
        }

        fn is_open(&mut self) -> bool {
            self.inner.is_open()
        }
    }

    #[derive(Debug)]
    struct Counting(Arc<AtomicUsize>);

    impl<In: Transport> Connector<In> for Counting {
        type Out = Counted<In>;

        fn connect(
            &self,
            _: &ConnectionDetails,
            chained: Option<In>,
        ) -> Result<Option<Self::Out>, ureq::Error> {
            Ok(chained.map(|inner| Counted {
                inner,
                writes: Arc::clone(&self.0),
            }))
        }
    }

    /// What a receiver got: each request's peer and body.
    type Got = Vec<(SocketAddr, Vec<u8>)>;

    /// POSTs each body in turn on one agent; returns the writes that reached the socket and
    /// what the receiver got.
    fn post_all(
        agent: impl FnOnce(Arc<AtomicUsize>) -> ureq::Agent,
        bodies: &[Vec<u8>],
    ) -> (usize, Got) {
        let writes = Arc::new(AtomicUsize::new(0));
        let agent = agent(Arc::clone(&writes));
        let receiver = Receiver::start(|_, _| Reply::status(200).body("ok"));
        let url = format!("{}/hook", receiver.url);
        for body in bodies {
            let mut response = agent.post(&url).send(body).expect("sent");
            let answer = response.body_mut().read_to_string().expect("answer");
            assert_eq!(answer, "ok", "the response is read through the layer");
        }
        let received = receiver.wait(bodies.len(), Duration::from_secs(10));
        (
            writes.load(Ordering::SeqCst),
            received.into_iter().map(|r| (r.peer, r.body)).collect(),
        )
    }

    fn plain(writes: Arc<AtomicUsize>) -> ureq::Agent {
        let chain = ().chain(TcpConnector::default()).chain(Counting(writes));
        ureq::Agent::with_parts(
            ureq::Agent::config_builder().build(),
            chain,
            DefaultResolver::default(),
        )
    }

    fn coalesced(writes: Arc<AtomicUsize>) -> ureq::Agent {
        let chain =
            ().chain(TcpConnector::default())
                .chain(Counting(writes))
                .chain(CoalescingStage);
        ureq::Agent::with_parts(
            ureq::Agent::config_builder().build(),
            chain,
            DefaultResolver::default(),
        )
    }

    #[test]
    fn each_request_leaves_in_one_write_on_a_kept_connection() {
        let bodies: Vec<Vec<u8>> = (0..3u8).map(|n| vec![b'a' + n; 1000]).collect();

        let (writes, received) = post_all(plain, &bodies);
        assert_eq!(
            writes,
            2 * bodies.len(),
            "ureq alone writes the head, then the body"
        );
        assert_eq!(
            received.iter().map(|(_, b)| b).collect::<Vec<_>>(),
            bodies.iter().collect::<Vec<_>>()
        );

        let (writes, received) = post_all(coalesced, &bodies);
        assert_eq!(writes, bodies.len(), "head and body in one write");
        assert_eq!(
            received.iter().map(|(_, b)| b).collect::<Vec<_>>(),
            bodies.iter().collect::<Vec<_>>()
        );
        assert!(
            received.iter().all(|(peer, _)| *peer == received[0].0),
            "one connection, kept between requests: {received:?}"
        );
    }

    #[test]
    fn a_body_larger_than_the_buffer_goes_out_whole_in_large_pieces() {
        let body: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
        let (writes, received) = post_all(coalesced, std::slice::from_ref(&body));
        assert_eq!(received.len(), 1);
        assert!(received[0].1 == body, "the body arrives byte for byte");
        // 128 KiB buffers: three or four pieces, never one per small read.
        assert!((2..=4).contains(&writes), "{writes} writes");
    }
}
