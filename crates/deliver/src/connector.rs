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
//!
//! ureq builds requests with the `http` crate, whose header names are lower-case; receivers that
//! look headers up case-sensitively (PHP's `getallheaders()`) miss `x-hook-signature` when the
//! vendor documents `X-Hook-Signature`. The same layer writes each header name of a request head
//! as the sender spelled it ([`spelled`]): only the letters' case changes, so the head is
//! rewritten in place, at no cost in length.

use std::cell::RefCell;
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
            head_next: true,
        }))
    }
}

thread_local! {
    /// The header names of the request this thread is sending, as its sender spelled them.
    /// ureq sends on the calling thread, so the transport reads them on the same one.
    /// Kept from request to request, so that setting it allocates nothing once warm.
    static SPELLING: RefCell<Spelling> = const {
        RefCell::new(Spelling {
            text: String::new(),
            ends: Vec::new(),
        })
    };
}

/// Header names as spelled, end to end in one string: name `n` ends at `ends[n]`.
struct Spelling {
    text: String,
    ends: Vec<usize>,
}

impl Spelling {
    fn names(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().filter_map(move |&end| {
            let name = self.text.get(start..end);
            start = end;
            name
        })
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// Headers ureq writes itself, in the casing HTTP's specifications write them.
const UREQ_SPELLING: &[&str] = &[
    "Host",
    "Content-Length",
    "Content-Type",
    "User-Agent",
    "Accept",
    "Accept-Encoding",
    "Transfer-Encoding",
    "Connection",
    "Proxy-Authorization",
];

/// Runs `send` with `names` as the spelling, on the wire, of the header names of the request it
/// sends (compared ignoring case; names not in it keep ureq's spelling, but for
/// [`UREQ_SPELLING`]'s).
pub(crate) fn spelled<'a, R>(
    names: impl IntoIterator<Item = &'a str>,
    send: impl FnOnce() -> R,
) -> R {
    SPELLING.with_borrow_mut(|spelling| {
        spelling.clear();
        for name in names {
            spelling.text.push_str(name);
            spelling.ends.push(spelling.text.len());
        }
    });
    let result = send();
    SPELLING.with_borrow_mut(Spelling::clear);
    result
}

/// Rewrites in place the header names of the HTTP/1.1 request head at the start of `bytes` to
/// their spelling (see [`spelled`]). Anything that is not a request head (TLS records, a body)
/// is left alone.
fn respell(bytes: &mut [u8]) {
    let Some(line_end) = find(bytes, b"\r\n") else {
        return;
    };
    let request_line = &bytes[..line_end];
    let method_ok = request_line
        .iter()
        .take_while(|&&b| b != b' ')
        .all(u8::is_ascii_uppercase);
    if !method_ok || !request_line.ends_with(b" HTTP/1.1") {
        return;
    }
    let head_end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    SPELLING.with_borrow(|names| {
        let mut at = line_end + 2;
        while at < head_end {
            let line_end = find(&bytes[at..], b"\r\n").map_or(head_end, |n| at + n);
            if let Some(colon) = bytes[at..line_end].iter().position(|&b| b == b':') {
                let name = &mut bytes[at..at + colon];
                let spelling = names
                    .names()
                    .chain(UREQ_SPELLING.iter().copied())
                    .find(|spelling| spelling.as_bytes().eq_ignore_ascii_case(name));
                if let Some(spelling) = spelling {
                    name.copy_from_slice(spelling.as_bytes());
                }
            }
            at = line_end + 2;
        }
    });
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
    /// Whether the next write starts a request: true on a new connection and once ureq waits
    /// for a response. ureq writes a head in one piece (it must fit its output buffer).
    head_next: bool,
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
        if std::mem::take(&mut self.head_next) {
            let pending = self.pending;
            respell(&mut self.buffers.output()[pending..pending + amount]);
        }
        self.pending += amount;
        self.timeout = Some(timeout);
        if self.buffers.output().len() - self.pending < FLUSH_BELOW {
            self.send_pending()?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.send_pending()?;
        self.head_next = true;
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
