//! The agent's HTTP endpoint, on the node address and `--port` (10250,
//! the kubelet's, by default), recorded in the Node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`:
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}` streams a
//!   container's output, with the kubelet's parameters `follow=true`,
//!   `tailLines=N` and `previous=true` (the attempt before the current
//!   one). 404 when this node has no such container.
//! - `GET /healthz` answers `ok`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::ContainerRuntimeClone;
use crate::pods::spec::{self, LABEL_CONTAINER, LABEL_NAMESPACE, LABEL_NODE, LABEL_POD};

struct Served<R> {
    runtime: R,
    node: String,
}

/// The query of a log request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail_lines: Option<u64>,
    #[serde(default)]
    previous: bool,
}

async fn container_logs<R: ContainerRuntimeClone>(
    State(served): State<Arc<Served<R>>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let label = format!("{LABEL_NODE}={}", served.node);
    let mut found: Vec<_> = match served.runtime.list(&label).await {
        Ok(all) => all
            .into_iter()
            .filter(|c| {
                spec::role(c) == "app"
                    && c.labels.get(LABEL_NAMESPACE) == Some(&namespace)
                    && c.labels.get(LABEL_POD) == Some(&pod)
                    && c.labels.get(LABEL_CONTAINER) == Some(&container)
            })
            .collect(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    found.sort_by_key(|c| std::cmp::Reverse(spec::attempt(c)));
    let index = usize::from(query.previous);
    let Some(c) = found.get(index) else {
        let what = if query.previous {
            "previous terminated container"
        } else {
            "container"
        };
        return (
            StatusCode::NOT_FOUND,
            format!("{what} \"{container}\" in pod \"{pod}\" not found on this node"),
        )
            .into_response();
    };
    let stream = served.runtime.logs(&c.id, query.follow, query.tail_lines);
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// Serves the agent's endpoint on `listener` until `shutdown`.
pub async fn serve<R: ContainerRuntimeClone>(
    listener: tokio::net::TcpListener,
    runtime: R,
    node: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let served = Arc::new(Served { runtime, node });
    let app = Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs::<R>),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(served);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
