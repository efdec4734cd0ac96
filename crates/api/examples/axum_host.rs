//! A host's axum server with callout's management API mounted under `/hooks`, beside the
//! host's own routes: the few lines a host writes. Run with
//! `cargo run -p callout-api --example axum_host`; it serves on 127.0.0.1, registers a
//! SuperOffice webhook through its own API, lists it, and stops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use callout_api::{Api, Authorizer, Caller, Refusal};

/// The host decides who calls: here one API key per tenant, in a header of its choosing.
struct ApiKeys;

impl Authorizer for ApiKeys {
    fn authorize(&self, headers: &http::HeaderMap) -> Result<Caller, Refusal> {
        match headers.get("x-api-key").map(|v| v.as_bytes()) {
            Some(b"acme-key") => Ok(Caller::new("acme-admin", "acme")),
            _ => Err(Refusal::new("missing or unknown x-api-key")),
        }
    }
}

/// The mount: read the body up to the API's limit, call the API on a blocking thread (the
/// engine writes to disk), hand back its response.
async fn hooks(State(api): State<Arc<Api>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, api.max_body()).await else {
        return Response::builder()
            .status(413)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let answered = tokio::task::spawn_blocking(move || {
        api.handle(http::Request::from_parts(parts, body.to_vec()))
    })
    .await;
    match answered {
        Ok(response) => response.map(Body::from),
        Err(_) => Response::builder()
            .status(500)
            .body(Body::empty())
            .unwrap_or_default(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine = Arc::new(callout::Engine::open(dir.path())?);
    let api = Arc::new(Api::new(Arc::clone(&engine), ApiKeys).mounted_at("/hooks"));

    // axum's nest strips `/hooks`, so the API sees the paths it documents.
    let app = Router::new()
        .route("/", get(|| async { "the host's own pages" }))
        .nest(
            "/hooks",
            Router::new().fallback(hooks).with_state(Arc::clone(&api)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    // A SuperOffice client of this host, unchanged but for the base URL.
    let webhook = r#"{"Name": "crm", "Events": ["contact.created"], "TargetUrl": "https://receiver.example/hooks", "Secret": "s3cret"}"#;
    let created = tokio::task::spawn_blocking(move || {
        let created = request(
            address,
            "POST",
            "/hooks/superoffice/api/v1/Webhook",
            webhook,
        );
        let listed = request(
            address,
            "POST",
            "/hooks/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
            "{}",
        );
        (created, listed)
    })
    .await?;
    println!("created: {}", created.0?);
    println!("listed: {}", created.1?);

    let _ = stop.send(());
    server.await??;
    engine.shutdown(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// One HTTP/1.1 request with the host's API key; the response's status line and body.
fn request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nX-Api-Key: acme-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default().to_string();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(format!("{status} {body}"))
}
