//! skiff's API server: Kubernetes' REST API over the store.
//!
//! The server keeps no state: every object lives in the store at the key the
//! resource table gives it, and `metadata.resourceVersion` is the key's
//! `mod_revision`. Any number of servers can run against one store.
//!
//! - [`request`]: what a request asks for (route, list options, body
//!   format), decided without IO;
//! - [`objects`]: what happens to an object before it is stored (decode,
//!   stamp, keep status apart, generation, default, validate), pure;
//! - [`patch`] and [`apply`]: merge patch, strategic merge patch and
//!   server-side apply, pure;
//! - [`registry`]: the store-facing layer (create, get, list in pages,
//!   compare-and-swap update and delete, watch) with typed errors, shared
//!   with the controllers;
//! - [`handlers`]: the thin HTTP layer that ties them together;
//! - [`watch`]: watch streams (newline-delimited JSON events);
//! - [`logs`]: `pods/{name}/log`, proxied to the agent of the pod's node;
//! - [`nodeports`]: which node ports a Service gets, pure (the store keeps
//!   them unique through the registry's claims);
//! - [`discovery`], [`openapi`] and [`table`]: what kubectl asks of a server
//!   besides objects;
//! - [`status`]: the one place where errors become Kubernetes `Status`
//!   objects.
//!
//! Server-side apply (`PATCH` with `Content-Type: application/apply-patch+yaml`)
//! tells its outcome in the response header [`APPLY_HEADER`]
//! (`X-Skiff-Apply: created`, `configured` or `unchanged`), so that a client
//! can print what kubectl prints without comparing objects.

pub mod apply;
pub mod discovery;
pub mod handlers;
pub mod logs;
pub mod nodeports;
pub mod objects;
pub mod openapi;
pub mod patch;
pub use skiff_runtime::registry;
pub mod request;
pub mod status;
pub mod table;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;
use serde_json::json;
use skiff_client::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use registry::{Registry, RegistryError, Stored};
pub use status::ApiError;

/// The largest request body accepted (kube-apiserver accepts 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 << 20;
/// The response header telling the outcome of a server-side apply.
pub const APPLY_HEADER: &str = "x-skiff-apply";
/// The namespace that always exists.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Pause between attempts to create the default namespace while the store
/// does not answer.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(1);
/// Bound on the store read behind `/readyz`.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The API server's shared state: a registry over the store, and the
/// shutdown signal that ends watches. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiServer {
    registry: Registry,
    shutdown: CancellationToken,
    bootstrapped: Arc<AtomicBool>,
}

impl ApiServer {
    pub fn new(client: Client, shutdown: CancellationToken) -> Self {
        ApiServer {
            registry: Registry::new(client),
            shutdown,
            bootstrapped: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates the `default` namespace if it is missing, retrying until the
    /// store answers or shutdown; `/readyz` fails until this is done.
    pub async fn bootstrap(&self) {
        let namespaces = status::namespaces();
        let key = namespaces
            .key("", DEFAULT_NAMESPACE)
            .expect("default is a valid name");
        let body = json!({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": DEFAULT_NAMESPACE}});
        let object = objects::prepare_create(namespaces, "", &body, &objects::Stamp::now())
            .expect("the default namespace is a valid object");
        loop {
            let result = self.registry.create(&key, &object).await;
            match result {
                Ok(_) => tracing::info!(
                    namespace = DEFAULT_NAMESPACE,
                    "created the default namespace"
                ),
                Err(RegistryError::AlreadyExists) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the default namespace yet");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(BOOTSTRAP_RETRY) => continue,
                    }
                }
            }
            self.bootstrapped.store(true, Ordering::Release);
            return;
        }
    }
}

/// The HTTP routes of the API server.
pub fn router(server: ApiServer) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi/v3", get(openapi::paths))
        .route("/openapi/v3/{*group_version}", get(openapi::group_version))
        .route("/api", any(handlers::dispatch))
        .route("/apis", any(handlers::dispatch))
        .route("/api/{*rest}", any(handlers::dispatch))
        .route("/apis/{*rest}", any(handlers::dispatch))
        .fallback(not_found)
        .layer(middleware::from_fn(trace_request))
        .with_state(server)
}

/// Serves the API on `listener` until `server`'s shutdown token fires;
/// open watches end then too.
pub async fn serve(listener: tokio::net::TcpListener, server: ApiServer) -> std::io::Result<()> {
    let shutdown = server.shutdown.clone();
    let bootstrap = server.clone();
    tokio::spawn(async move { bootstrap.bootstrap().await });
    axum::serve(listener, router(server))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// One span per request with its method and path; the status and the
/// time taken are logged when it is answered.
async fn trace_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/livez");
    let span = tracing::info_span!("request", %method, %path);
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed_ms = start.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if probe {
            tracing::debug!(status, elapsed_ms, "answered");
        } else {
            tracing::info!(status, elapsed_ms, "answered");
        }
    });
    response
}

async fn not_found() -> Response {
    ApiError::PathNotFound.into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers and the default namespace exists.
async fn readyz(State(server): State<ApiServer>) -> Response {
    if !server.bootstrapped.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "[-]bootstrap: the default namespace is not created yet\n",
        )
            .into_response();
    }
    match tokio::time::timeout(READY_CHECK_TIMEOUT, server.registry.revision()).await {
        Ok(Ok(_)) => "ok".into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("[-]store: {e}\n")).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "[-]store: no answer in time\n",
        )
            .into_response(),
    }
}

/// A JSON response.
pub fn json_response<T: Serialize>(code: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("responses serialize to JSON");
    let mut response = (code, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
