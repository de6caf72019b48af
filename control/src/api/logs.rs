//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: a container's output,
//! proxied to the agent of the pod's node.
//!
//! The agent's address is the node's InternalIP and its port the node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`; the request goes to
//! `/containerLogs/{ns}/{pod}/{container}` with `follow`, `tailLines` and
//! `previous` passed on, and the agent's answer is streamed back as it
//! comes (a followed log ends when the client goes away).

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::stream;
use serde_json::Value;
use skiff_model::resources;

use super::ApiServer;
use super::request::{ResourcePath, query_param};
use super::status::ApiError;

/// Bound on reaching the agent and getting its response headers.
const AGENT_CONNECT_TIMEOUT_S: u64 = 10;

/// The container a log request names: `container=`, or the pod's only
/// container.
pub fn pick_container(pod: &Value, asked: Option<&str>, name: &str) -> Result<String, ApiError> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    match asked {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// `http://ADDRESS:PORT` of a node's agent, from the Node object.
pub fn agent_url(node: &Value) -> Option<String> {
    let status = &node["status"];
    let address = status["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()?;
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    Some(if address.contains(':') {
        format!("http://[{address}]:{port}")
    } else {
        format!("http://{address}:{port}")
    })
}

pub async fn pod_log(
    server: &ApiServer,
    p: &ResourcePath,
    name: &str,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let namespace = p.object_namespace();
    let pods = p.resource;
    let key = pods
        .key(namespace, name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let pod = server
        .registry()
        .get(&key)
        .await
        .map_err(|e| ApiError::from_registry(e, pods, name))?
        .value;
    let container = pick_container(&pod, query_param(params, "container"), name)?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let nodes = resources::lookup("nodes").expect("nodes are a resource");
    let node_key = nodes
        .key("", node_name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let node = server
        .registry()
        .get(&node_key)
        .await
        .map_err(|e| ApiError::from_registry(e, nodes, node_name))?
        .value;
    let base = agent_url(&node).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "node {node_name} does not say where its agent listens"
        ))
    })?;
    let mut url = format!("{base}/containerLogs/{namespace}/{name}/{container}");
    let mut sep = '?';
    for param in ["follow", "tailLines", "previous"] {
        if let Some(v) = query_param(params, param) {
            url.push(sep);
            url.push_str(&format!("{param}={v}"));
            sep = '&';
        }
    }
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(AGENT_CONNECT_TIMEOUT_S))
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the agent of node {node_name}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let message = resp.text().await.unwrap_or_default();
        return Err(if status == reqwest::StatusCode::NOT_FOUND {
            ApiError::BadRequest(message)
        } else {
            ApiError::Internal(format!(
                "the agent of node {node_name}: {status}: {message}"
            ))
        });
    }
    let body = stream::unfold(Some(resp), |resp| async move {
        let mut resp = resp?;
        match resp.chunk().await {
            Ok(Some(bytes)) => Some((Ok::<_, std::io::Error>(bytes), Some(resp))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_picked_as_kubectl_expects() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pick_container(&one, None, "p").unwrap(), "a");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            pick_container(&two, None, "p").unwrap_err().to_string(),
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(pick_container(&two, Some("b"), "p").unwrap(), "b");
        assert!(pick_container(&two, Some("c"), "p").is_err());
    }

    #[test]
    fn the_agent_is_found_in_the_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(agent_url(&node).as_deref(), Some("http://10.0.0.5:10250"));
        assert_eq!(agent_url(&json!({})), None);
    }
}
