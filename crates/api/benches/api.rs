//! The management API's cost per request: `Api::handle` alone (create a subscription, list
//! 10,000 subscriptions, publish one event), and over real HTTP on axum (publish) beside the
//! raw rate of the same axum server answering an empty response, in the same run, from one
//! keep-alive client on 127.0.0.1.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use callout::{Engine, Subscription};
use callout_api::{Api, Caller, Tokens};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const TOKEN: &str = "bench-token";
const TENANT: &str = "bench";
/// Subscriptions in the store for the listing benches.
const MANY: usize = 10_000;

fn open_api(dir: &std::path::Path) -> Arc<Api> {
    // Not delivering: the benches measure the API and the store, not the sender.
    let engine = Engine::builder(dir).deliver(false).open().expect("engine");
    let tokens = Tokens::new().with(TOKEN, Caller::new("bench", TENANT));
    Arc::new(Api::new(Arc::new(engine), tokens))
}

fn request(method: &str, path: &str, body: &str) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body.as_bytes().to_vec())
        .expect("request")
}

fn expect(api: &Api, method: &str, path: &str, body: &str, status: u16) -> usize {
    let response = api.handle(request(method, path, body));
    assert_eq!(
        response.status(),
        status,
        "{}",
        String::from_utf8_lossy(response.body())
    );
    response.body().len()
}

const EVENT: &str =
    r#"{"entity": "Contact", "action": "created", "id": "42", "data": {"name": "Ada"}}"#;

fn handler(c: &mut Criterion) {
    let mut group = c.benchmark_group("api");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let dir = tempfile::tempdir().expect("tempdir");
    let api = open_api(dir.path());
    let create = r#"{"target_url": "https://receiver.example/hooks", "events": ["contact.*"], "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}"#;
    group.bench_function("create", |b| {
        b.iter(|| expect(&api, "POST", "/v1/subscriptions", create, 201))
    });
    let dir_one = tempfile::tempdir().expect("tempdir");
    let one = open_api(dir_one.path());
    expect(&one, "POST", "/v1/subscriptions", create, 201);
    group.bench_function("publish, 1 matching subscription", |b| {
        b.iter(|| expect(&one, "POST", "/v1/events", EVENT, 202))
    });

    // The listing benches: MANY subscriptions of the tenant, made through the engine (the
    // create bench above measured the API's way).
    let dir = tempfile::tempdir().expect("tempdir");
    let many = open_api(dir.path());
    let engine = many.engine();
    for n in 0..MANY {
        let mut sub = Subscription::new(format!("https://receiver.example/{n}"))
            .events(["lead.*"])
            .profile(callout::core::Profile::Superoffice);
        sub.tenant = Some(TENANT.into());
        engine.subscriptions().create(sub).expect("create");
    }
    group.bench_function("list 10k: GET /v1/subscriptions?limit=1000", |b| {
        b.iter(|| expect(&many, "GET", "/v1/subscriptions?limit=1000", "", 200))
    });
    group.bench_function("list 10k: SuperOffice GetAllWebhooks, all 10k", |b| {
        b.iter(|| {
            expect(
                &many,
                "POST",
                "/superoffice/api/v1/Agents/Webhook/GetAllWebhooks",
                "{}",
                200,
            )
        })
    });
    group.bench_function("publish, 10k subscriptions, none matching", |b| {
        b.iter(|| expect(&many, "POST", "/v1/events", EVENT, 202))
    });
    group.finish();
}

/// The API mounted as `callout serve` mounts it (body up to the limit, then a blocking thread).
async fn mounted(State(api): State<Arc<Api>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, api.max_body())
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let answered =
        tokio::task::spawn_blocking(move || api.handle(http::Request::from_parts(parts, body)))
            .await
            .expect("handler");
    answered.map(Body::from)
}

fn over_http(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = open_api(dir.path());
    let create = r#"{"target_url": "https://receiver.example/hooks", "events": ["contact.*"]}"#;
    expect(&api, "POST", "/v1/subscriptions", create, 201);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = Router::new()
        .route("/empty", axum::routing::get(|| async { "" }))
        .fallback(mounted)
        .with_state(api);
    runtime.spawn(async move { axum::serve(listener, app).await });

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut group = c.benchmark_group("http");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    group.bench_function("axum, empty response", |b| {
        b.iter(|| {
            let mut response = agent.get(format!("{base}/empty")).call().expect("GET");
            response.body_mut().read_to_vec().expect("body")
        })
    });
    group.bench_function("axum + Api: POST /v1/events", |b| {
        b.iter(|| {
            let mut response = agent
                .post(format!("{base}/v1/events"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .send(EVENT)
                .expect("POST");
            assert_eq!(response.status(), 202);
            response.body_mut().read_to_vec().expect("body")
        })
    });
    group.finish();
    runtime.shutdown_timeout(Duration::from_secs(1));
}

criterion_group!(benches, handler, over_http);
criterion_main!(benches);
