//! `callout serve`: the management API (`callout-api`, every dialect under its prefix), a
//! Prometheus `/metrics` and a `/health` endpoint over HTTP (axum on tokio), while the engine
//! delivers as `run` does, until Ctrl-C or SIGTERM. Engine calls block on disk, so the API
//! runs on tokio's blocking threads, never on its async workers.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use callout::Engine;
use callout_api::{Api, Tokens};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::args::ServeArgs;
use crate::error::Failure;
use crate::store::{self, Context};

/// Async threads: they only move bytes; the work happens on blocking threads.
const ASYNC_THREADS: usize = 2;

/// What every request handler shares.
#[derive(Clone)]
struct Served {
    api: Arc<Api>,
    engine: Arc<Engine>,
    metrics: PrometheusHandle,
}

pub(crate) fn run(ctx: &Context, args: &ServeArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let tokens = tokens(args)?;
    // Installed before the engine starts, so its first deliveries are counted.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Failure::failed(format_args!("cannot record metrics: {e}")))?;
    let engine = Arc::new(ctx.open_delivering(args.workers.map(usize::from))?);
    let api = Arc::new(Api::new(Arc::clone(&engine), tokens).body_limit(args.body_limit));
    let served = Served {
        api,
        engine: Arc::clone(&engine),
        metrics,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ASYNC_THREADS)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format_args!("cannot start the server: {e}")))?;
    let served_result = runtime.block_on(serve(served, args.listen, out));
    // Requests in flight finished with the graceful shutdown; then the engine's deliveries.
    drop(runtime);
    let closed = store::close(&engine);
    served_result?;
    closed?;
    writeln!(out, "stopped")?;
    Ok(())
}

/// The credentials: `--tokens FILE`, else the table's text in `$CALLOUT_TOKENS`. Serving
/// without any is refused: every request would be refused too.
fn tokens(args: &ServeArgs) -> Result<Tokens, Failure> {
    let (text, source) = match &args.tokens {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                Failure::not_found(format_args!("cannot read --tokens {}: {e}", path.display()))
            })?,
            format!("--tokens {}", path.display()),
        ),
        None => (
            std::env::var("CALLOUT_TOKENS").unwrap_or_default(),
            "$CALLOUT_TOKENS".to_string(),
        ),
    };
    let tokens = Tokens::parse(&text).map_err(|e| Failure::usage(format_args!("{source}: {e}")))?;
    if tokens.is_empty() {
        return Err(Failure::usage(
            "no credentials: give --tokens FILE or $CALLOUT_TOKENS (`credential tenant [name]` per line)",
        ));
    }
    Ok(tokens)
}

async fn serve(served: Served, listen: SocketAddr, out: &mut dyn Write) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::failed(format_args!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::failed(format_args!("cannot listen on {listen}: {e}")))?;
    // The first line says where, so a script (or a test) that asked for port 0 knows.
    writeln!(out, "listening on http://{bound}")?;
    out.flush()?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(api)
        .with_state(served);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|e| Failure::failed(format_args!("the server failed: {e}")))
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Everything but /health and /metrics: the API. The body is read up to the API's limit and no
/// further; a longer one gets the API's own 413 in its dialect's shape.
async fn api(State(served): State<Served>, request: Request<Body>) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let limit = served.api.max_body();
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes.to_vec(),
        Err(_) => {
            // Over the limit (or cut off): the API refuses it from the length alone.
            let over = (limit.saturating_add(1)).to_string();
            if let Ok(value) = HeaderValue::from_str(&over) {
                parts.headers.insert(header::CONTENT_LENGTH, value);
            }
            Vec::new()
        }
    };
    let api = Arc::clone(&served.api);
    let answered =
        tokio::task::spawn_blocking(move || api.handle(Request::from_parts(parts, body))).await;
    match answered {
        Ok(response) => response.map(Body::from),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// 200 while the store answers; 503 when it does not.
async fn health(State(served): State<Served>) -> Response<Body> {
    let engine = Arc::clone(&served.engine);
    match tokio::task::spawn_blocking(move || engine.stats()).await {
        Ok(Ok(_)) => json(StatusCode::OK, r#"{"status":"ok"}"#),
        _ => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"unavailable"}"#,
        ),
    }
}

async fn metrics(State(served): State<Served>) -> Response<Body> {
    let mut response = Response::new(Body::from(served.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}
