//! HTTPS end to end: a rustls receiver on 127.0.0.1 with a self-signed certificate (made for
//! these tests with openssl, valid until 2126, for 127.0.0.1 and localhost; the key protects
//! nothing). The sender's own request writing runs above TLS, so this is where it is checked.

use std::io::{BufReader, Write};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use callout_deliver::{ErrorClass, Request, Verdict};
use callout_testkit::{read_request, RawReceiver};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::sender;

const CERT: &[u8] = include_bytes!("tls/cert.pem");
const KEY: &[u8] = include_bytes!("tls/key.pem");

/// Serves `count` requests on each TLS connection, answering each `200 ok`; sends each body.
/// The TLS side is here (rustls is this crate's dev-dependency, not the testkit's); the rest
/// is the testkit's receiver.
fn tls_receiver(count: usize) -> (String, mpsc::Receiver<Vec<u8>>, RawReceiver) {
    let certs = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(KEY).expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let config = Arc::new(config);
    let (seen, bodies) = mpsc::channel();
    let receiver = RawReceiver::start(move |connection| {
        let Ok(tls) = rustls::ServerConnection::new(Arc::clone(&config)) else {
            return;
        };
        let mut stream = BufReader::new(rustls::StreamOwned::new(tls, connection.into_stream()));
        for _ in 0..count {
            let Some(request) = read_request(&mut stream) else {
                return;
            };
            if seen.send(request.body().to_vec()).is_err() {
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
    let url = format!("{}/hook", receiver.url.replace("http://", "https://"));
    (url, bodies, receiver)
}

#[test]
fn an_https_receiver_gets_each_body_whole_on_one_kept_connection() {
    let (url, bodies, _receiver) = tls_receiver(2);
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
    let (url, bodies, _receiver) = tls_receiver(1);
    let outcome = sender().send(&Request::new("del_1", &url, b"{}".to_vec()));
    assert_eq!(outcome.error_class(), Some(ErrorClass::Tls), "{outcome:?}");
    assert!(bodies.recv_timeout(Duration::from_millis(300)).is_err());
}
