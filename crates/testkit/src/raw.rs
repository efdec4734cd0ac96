//! A receiver below HTTP: a TCP listener whose script answers each connection by hand.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::hold::Hold;
use crate::http::{read_request, RawRequest};
use crate::log::Log;
use crate::IDLE_LIMIT;

/// A TCP listener on `127.0.0.1:0` that runs a script on each connection, each in its own
/// thread, and records every request the scripts read with [`Connection::read_request`].
///
/// For receivers that misbehave below HTTP (stall, drip, cut the connection, send garbage) and
/// for tests that need the exact bytes a client wrote. Dropping it stops accepting and cuts
/// scripted pauses short; connections end when their script returns.
pub struct RawReceiver {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
    address: SocketAddr,
    log: Arc<Log<RawRequest>>,
    acceptor: Option<JoinHandle<()>>,
}

/// One accepted connection, as a [`RawReceiver`]'s script gets it.
pub struct Connection {
    /// Which connection this is, counted from 0 in accept order.
    pub index: usize,
    reader: BufReader<TcpStream>,
    requests: usize,
    log: Arc<Log<RawRequest>>,
}

impl RawReceiver {
    /// Starts a receiver that runs `script` on each connection it accepts.
    pub fn start(script: impl Fn(Connection) + Send + Sync + 'static) -> RawReceiver {
        RawReceiver::with_log(Log::new(true), script)
    }

    /// Starts a receiver that reads one request on each connection and then hands the
    /// connection to `script` to misbehave with (stall, cut, answer garbage).
    pub fn after_request(script: impl Fn(Connection) + Send + Sync + 'static) -> RawReceiver {
        RawReceiver::start(move |mut connection| {
            if connection.read_request().is_some() {
                script(connection);
            }
        })
    }

    /// Like [`RawReceiver::start`], but only counts the requests read (see
    /// [`RawReceiver::count`]): for benches, which send too many to keep.
    pub fn start_counting(script: impl Fn(Connection) + Send + Sync + 'static) -> RawReceiver {
        RawReceiver::with_log(Log::new(false), script)
    }

    /// The benches' receiver: answers every request on every kept-alive connection with an
    /// empty 200 at once, and only counts them. Faster and steadier than tiny_http, so a bench
    /// measures its client.
    pub fn counting_ok() -> RawReceiver {
        RawReceiver::start_counting(|mut connection| {
            while connection.read_request().is_some() {
                if !connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") {
                    return;
                }
            }
        })
    }

    /// Answers every request with an empty 200 once `hold` lets it go ([`Hold::keep`]), each
    /// connection on a thread of its own: so as many requests as clients send at once can be
    /// held at once (tiny_http's pool, behind [`Receiver`](crate::Receiver), can leave a
    /// connection queued behind four held ones).
    pub fn holding(hold: Arc<Hold>) -> RawReceiver {
        RawReceiver::start(move |mut connection| {
            while connection.read_request().is_some() {
                hold.keep();
                if !connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") {
                    return;
                }
            }
        })
    }

    fn with_log(
        log: Log<RawRequest>,
        script: impl Fn(Connection) + Send + Sync + 'static,
    ) -> RawReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("listener address");
        let log = Arc::new(log);
        let script = Arc::new(script);
        let accepted = AtomicUsize::new(0);
        let acceptor = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if log.is_stopped() {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
                    let connection = Connection {
                        index: accepted.fetch_add(1, Ordering::SeqCst),
                        reader: BufReader::new(stream),
                        requests: 0,
                        log: Arc::clone(&log),
                    };
                    let script = Arc::clone(&script);
                    thread::spawn(move || script(connection));
                }
            })
        };
        RawReceiver {
            url: format!("http://{address}"),
            address,
            log,
            acceptor: Some(acceptor),
        }
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.log.entries()
    }

    /// How many requests were read so far (also when only counting).
    pub fn count(&self) -> usize {
        self.log.count()
    }

    /// Waits until at least `count` requests were read, at most `limit`; returns those read by
    /// then (which the caller checks: fewer means the deadline passed).
    pub fn wait(&self, count: usize, limit: Duration) -> Vec<RawRequest> {
        self.log.wait_until(count, limit, |seen, _| seen >= count)
    }

    /// Waits for the `n`-th request read (from 0), at most `limit`; None if it was not read by
    /// then.
    pub fn nth(&self, n: usize, limit: Duration) -> Option<RawRequest> {
        self.wait(n + 1, limit).get(n).cloned()
    }

    /// Waits until the request count reaches `count`, at most `limit`; returns the count then.
    pub fn wait_count(&self, count: usize, limit: Duration) -> usize {
        self.log.wait_until(count, limit, |seen, _| seen >= count);
        self.log.count()
    }
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        self.log.stop();
        // The acceptor is blocked in accept(): one last connection wakes it to see the stop.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Connection {
    /// Reads the next request (see [`read_request`]) and records it; None when the client
    /// closed the connection, or sent nothing whole within [`IDLE_LIMIT`].
    pub fn read_request(&mut self) -> Option<RawRequest> {
        let mut request = read_request(&mut self.reader)?;
        request.connection = self.index;
        request.index = self.requests;
        self.requests += 1;
        self.log.push_with(request.clone(), |_| ());
        Some(request)
    }

    /// Reads whatever arrives next, up to `max` bytes, without taking it for HTTP (a TLS
    /// ClientHello, say). Not recorded.
    pub fn read_some(&mut self, max: usize) -> Vec<u8> {
        let mut bytes = vec![0; max];
        let read = self.reader.read(&mut bytes).unwrap_or(0);
        bytes.truncate(read);
        bytes
    }

    /// Writes `bytes` and flushes; false if the client hung up, which some tests want.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        let stream = self.reader.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .is_ok()
    }

    /// Writes `bytes` in pieces of `piece` bytes with `gap` between them: a slow, dripping
    /// response. False if the client hung up or the receiver was dropped meanwhile.
    pub fn drip(&mut self, bytes: &[u8], piece: usize, gap: Duration) -> bool {
        for (n, chunk) in bytes.chunks(piece.max(1)).enumerate() {
            if n > 0 && !self.pause(gap) {
                return false;
            }
            if !self.write(chunk) {
                return false;
            }
        }
        true
    }

    /// Writes `piece` again and again, `gap` apart, for up to `limit`: a receiver that never
    /// finishes its answer (a header dripped forever, endless `100 Continue`). Returns when the
    /// client hangs up, the receiver is dropped, or `limit` has passed.
    pub fn repeat(&mut self, piece: &[u8], gap: Duration, limit: Duration) {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if !self.write(piece) || !self.pause(gap) {
                return;
            }
        }
    }

    /// Does nothing for `pause` (a stalled receiver), or less if the receiver is dropped
    /// meanwhile; false then.
    pub fn pause(&self, pause: Duration) -> bool {
        self.log.pause(pause)
    }

    /// The connection itself, to wrap (in TLS, say) before anything was read from it: bytes
    /// already read into this connection's buffer would be lost.
    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner()
    }

    /// The connection itself, for what the methods above do not cover.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_captured_byte_for_byte_per_connection() {
        let receiver = RawReceiver::start(|mut connection| {
            while connection.read_request().is_some() {
                connection.write(b"HTTP/1.1 204 No Content\r\n\r\n");
            }
        });
        let wire = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let mut first = TcpStream::connect(receiver.url.trim_start_matches("http://")).unwrap();
        first.write_all(wire).unwrap();
        first.write_all(wire).unwrap();
        let mut second = TcpStream::connect(receiver.url.trim_start_matches("http://")).unwrap();
        second.write_all(wire).unwrap();
        let got = receiver.wait(3, Duration::from_secs(5));
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|r| r.bytes == wire && r.body() == b"abc"));
        let mut places: Vec<_> = got.iter().map(|r| (r.connection, r.index)).collect();
        places.sort();
        assert_eq!(places, [(0, 0), (0, 1), (1, 0)]);
    }

    #[test]
    fn a_drip_arrives_whole_and_dropping_cuts_a_pause_short() {
        let receiver = RawReceiver::after_request(|mut connection| {
            connection.drip(b"HTTP/1.1 200 OK\r\n\r\n", 4, Duration::from_millis(5));
            connection.pause(Duration::from_secs(60));
        });
        let mut stream = TcpStream::connect(receiver.url.trim_start_matches("http://")).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = [0u8; 19];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n\r\n");
        let started = std::time::Instant::now();
        drop(receiver);
        // The script's pause ends with the receiver, and the connection with the script.
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(stream.read(&mut answer).unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn counting_ok_answers_and_counts() {
        let receiver = RawReceiver::counting_ok();
        let mut stream = TcpStream::connect(receiver.url.trim_start_matches("http://")).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        assert_eq!(receiver.wait_count(1, Duration::from_secs(5)), 1);
        assert!(receiver.requests().is_empty(), "counted, not kept");
    }
}
