//! Test receivers: a tiny_http server that records what it received, and raw TCP listeners for
//! receivers that misbehave.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use callout_deliver::{AllowList, Sender, SenderConfig, Timeouts};

/// How long any test receiver waits for a request before giving up.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// One request as the receiver saw it, bytes untouched.
#[derive(Debug, Clone)]
pub struct Received {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl Received {
    /// Every value of a header, name compared case-insensitively.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The single value of a header; panics if it is missing or repeated.
    pub fn one(&self, name: &str) -> &str {
        let values = self.all(name);
        assert_eq!(values.len(), 1, "header {name}: {values:?}");
        values[0]
    }
}

/// What a test receiver answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

/// A tiny_http receiver answering at most `max_requests` requests with `answer`, each request
/// reported on the returned channel. Returns the base URL `http://127.0.0.1:<port>`.
pub fn receiver<F>(max_requests: usize, answer: F) -> (String, mpsc::Receiver<Received>)
where
    F: Fn(&Received) -> Reply + Send + 'static,
{
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let (sent, received) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..max_requests {
            let Ok(Some(mut request)) = server.recv_timeout(IDLE_LIMIT) else {
                break;
            };
            let mut body = Vec::new();
            request.as_reader().read_to_end(&mut body).unwrap();
            let seen = Received {
                url: request.url().to_string(),
                headers: request
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_string(),
                            h.value.as_str().to_string(),
                        )
                    })
                    .collect(),
                body,
                peer: *request.remote_addr().unwrap(),
            };
            let reply = answer(&seen);
            let _ = sent.send(seen);
            let mut response =
                tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
            for (name, value) in reply.headers {
                response =
                    response.with_header(tiny_http::Header::from_bytes(name, value).unwrap());
            }
            let _ = request.respond(response);
        }
    });
    (format!("http://127.0.0.1:{port}"), received)
}

/// A raw TCP receiver: accepts one connection, reads the request head and body (by
/// Content-Length), then hands the stream to `script` to misbehave with.
pub fn raw_receiver<F>(script: F) -> String
where
    F: FnOnce(TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(IDLE_LIMIT)).unwrap();
        read_request(&mut stream);
        script(stream);
    });
    format!("http://127.0.0.1:{port}")
}

/// Reads one HTTP/1.1 request with a Content-Length body; bounded by the read timeout and by
/// the 1 MiB the tests ever send. False when the connection ended (or timed out) before a head.
pub fn read_request(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return false;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(1 << 20)];
    let _ = stream.read_exact(&mut body);
    true
}

/// Writes and ignores errors: the sender may have hung up, which is what some tests want.
pub fn write_quietly(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// A sender allowed to reach 127.0.0.1, with short timeouts so failing tests fail fast.
pub fn sender() -> Sender {
    sender_with(Timeouts::all(Duration::from_secs(3)))
}

pub fn sender_with(timeouts: Timeouts) -> Sender {
    Sender::new(SenderConfig {
        allow: AllowList::parse(["127.0.0.1"]).unwrap(),
        timeouts,
        ..SenderConfig::default()
    })
    .unwrap()
}

/// Formats unix seconds as an IMF-fixdate, independently of the crate's parser.
pub fn imf_fixdate(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Walk the calendar: slow but obviously right for the few dates the tests format.
    let (mut year, mut remaining) = (1970u64, days);
    loop {
        let length = if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) {
            366
        } else {
            365
        };
        if remaining < length {
            break;
        }
        remaining -= length;
        year += 1;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let lengths = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while remaining >= lengths[month] {
        remaining -= lengths[month];
        month += 1;
    }
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        remaining + 1,
        MONTHS[month],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn imf_fixdate_formats_the_rfc_example() {
    assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
}
