//! HTTPS end to end: a rustls receiver on 127.0.0.1 with a self-signed certificate (made for
//! these tests with openssl, valid until 2126, for 127.0.0.1 and localhost; the key protects
//! nothing). The sender's own request writing runs above TLS, so this is where it is checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use callout_deliver::{ErrorClass, Request, Verdict};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::sender;

const CERT: &[u8] = include_bytes!("tls/cert.pem");
const KEY: &[u8] = include_bytes!("tls/key.pem");

/// Serves `count` requests on one TLS connection, answering each `200 ok`; sends each body.
fn tls_receiver(count: usize) -> (String, mpsc::Receiver<Vec<u8>>) {
    let certs = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(KEY).expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (seen, bodies) = mpsc::channel();
    thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok(connection) = rustls::ServerConnection::new(Arc::new(config)) else {
            return;
        };
        let mut stream = BufReader::new(rustls::StreamOwned::new(connection, tcp));
        for _ in 0..count {
            let mut length = 0;
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if stream.read_exact(&mut body).is_err() || seen.send(body).is_err() {
                return;
            }
            let tls = stream.get_mut();
            if tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .and_then(|()| tls.flush())
                .is_err()
            {
                return;
            }
        }
    });
    (format!("https://127.0.0.1:{port}/hook"), bodies)
}

#[test]
fn an_https_receiver_gets_each_body_whole_on_one_kept_connection() {
    let (url, bodies) = tls_receiver(2);
    let sender = sender();
    // Small, and larger than the sender's 128 KiB buffers.
    for body in [b"{\"n\":1}".to_vec(), vec![b'x'; 300_000]] {
        let mut request = Request::new("del_1", &url, body.clone());
        request.insecure_tls = true;
        let outcome = sender.send(&request);
        assert_eq!(outcome.verdict, Verdict::Delivered, "{outcome:?}");
        assert_eq!(outcome.response.map(|r| r.body), Some(b"ok".to_vec()));
        let got = bodies
            .recv_timeout(Duration::from_secs(10))
            .expect("received");
        assert!(got == body, "the body arrives byte for byte");
    }
}

#[test]
fn a_self_signed_certificate_is_a_tls_failure_unless_checks_are_off() {
    let (url, bodies) = tls_receiver(1);
    let outcome = sender().send(&Request::new("del_1", &url, b"{}".to_vec()));
    assert_eq!(outcome.error_class(), Some(ErrorClass::Tls), "{outcome:?}");
    assert!(bodies.recv_timeout(Duration::from_millis(300)).is_err());
}
