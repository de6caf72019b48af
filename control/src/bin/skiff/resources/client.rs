//! A small HTTP client for skiff-control: JSON requests with bounded
//! times, Kubernetes `Status` errors turned into [`CliError::Server`], and
//! watch streams read one event (one line) at a time.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::CliError;

/// Where the API server listens unless `--server` or `SKIFF_SERVER` says
/// otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// Time to open a connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for one request and its whole answer (watches excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one watch request stays open before it is opened again from
/// where it stopped (the API server's own limit is 30 minutes).
pub const WATCH_TIMEOUT_SECONDS: u64 = 30 * 60;
/// Longest watch event line accepted (the API server bounds objects to
/// 3 MiB).
const MAX_WATCH_LINE_BYTES: usize = 16 << 20;
/// The header in which the API server tells the outcome of a server-side
/// apply.
const APPLY_HEADER: &str = "x-skiff-apply";

/// An answer of the API server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// `X-Skiff-Apply`: `created`, `configured` or `unchanged`.
    pub apply: Option<String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

/// The API server at one base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client for `server` (`http://host:port`; `host:port` is taken as
    /// http).
    pub fn new(server: &str) -> Result<Client, CliError> {
        let base = server_url(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| CliError::Local(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client { http, base })
    }

    /// The base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the whole answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Reply, CliError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(REQUEST_TIMEOUT)
            .header("accept", "application/json");
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let apply = resp
            .headers()
            .get(APPLY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        Ok(Reply {
            status,
            apply,
            body,
        })
    }

    /// Like [`send`](Client::send), but an answer other than 2xx is an error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Reply, CliError> {
        let reply = self.send(method, path, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(server_error(reply.status, &reply.body))
        }
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(Method::GET, path, None).await?.body)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, CliError> {
        self.call(Method::POST, path, Some(json_body(body))).await
    }

    /// `PATCH path` with a body of `content_type`.
    pub async fn patch(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply, CliError> {
        self.call(Method::PATCH, path, Some((content_type, body)))
            .await
    }

    /// `DELETE path` with `DeleteOptions`.
    pub async fn delete(&self, path: &str, options: &Value) -> Result<Reply, CliError> {
        self.call(Method::DELETE, path, Some(json_body(options)))
            .await
    }

    /// Opens a watch; `path` carries `watch=1` and its other parameters.
    pub async fn watch(&self, path: &str) -> Result<WatchStream, CliError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(server_error(status, &body));
        }
        Ok(WatchStream {
            resp,
            buf: Vec::new(),
            base: self.base.clone(),
        })
    }

    /// `GET path` whose 2xx body is read as it comes (a followed log).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(server_error(status, &body));
        }
        Ok(resp)
    }

    fn transport_error(&self, e: &reqwest::Error) -> CliError {
        transport_error(&self.base, e)
    }
}

fn json_body(v: &Value) -> (&'static str, Vec<u8>) {
    (
        "application/json",
        serde_json::to_vec(v).expect("JSON values serialize"),
    )
}

/// Why a request got no answer, in one line.
fn transport_error(base: &str, e: &reqwest::Error) -> CliError {
    if e.is_timeout() {
        return CliError::Local(format!(
            "the API server at {base} did not answer within {}s",
            REQUEST_TIMEOUT.as_secs()
        ));
    }
    let mut cause: &dyn std::error::Error = e;
    let mut io_kind = None;
    while let Some(next) = cause.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        cause = next;
    }
    let why = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_string(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".to_string(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_string(),
        _ => cause.to_string(),
    };
    if e.is_connect() {
        CliError::Local(format!("cannot reach the API server at {base}: {why}"))
    } else {
        CliError::Local(format!(
            "the request to the API server at {base} failed: {why}"
        ))
    }
}

/// The error of an answer that is not 2xx: kubectl's
/// `Error from server (Reason): message` when the body is a `Status`.
pub fn server_error(status: StatusCode, body: &Value) -> CliError {
    if body.get("kind").and_then(Value::as_str) == Some("Status") {
        let field = |f: &str| {
            body.get(f)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return CliError::Server {
            reason: field("reason"),
            message: field("message"),
        };
    }
    let text = match body {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null => status.to_string(),
        other => other.to_string(),
    };
    CliError::Server {
        reason: String::new(),
        message: format!("the server answered {status}: {text}"),
    }
}

/// `http://host:port` without a trailing slash; `host:port` gets `http://`.
pub fn server_url(server: &str) -> Result<String, CliError> {
    let server = server.trim().trim_end_matches('/');
    if server.is_empty() {
        return Err(CliError::Local("--server is empty".to_string()));
    }
    if server.starts_with("http://") || server.starts_with("https://") {
        Ok(server.to_string())
    } else if server.contains("://") {
        Err(CliError::Local(format!(
            "--server {server:?}: only http:// and https:// URLs are supported"
        )))
    } else {
        Ok(format!("http://{server}"))
    }
}

/// A query string from parameters: `?a=1&b=x%3Dy`, or `""` when there are
/// none.
pub fn query(params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A watch stream: newline-delimited JSON events.
pub struct WatchStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    base: String,
}

impl WatchStream {
    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Value>, CliError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| CliError::Local(format!("a watch event is not JSON: {e}")));
            }
            if self.buf.len() > MAX_WATCH_LINE_BYTES {
                return Err(CliError::Local(format!(
                    "a watch event is longer than {MAX_WATCH_LINE_BYTES} bytes"
                )));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => return Err(transport_error(&self.base, &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        assert_eq!(
            server_url("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            server_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(server_url("ftp://x").is_err());
        assert!(server_url(" ").is_err());
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[("labelSelector", "app=web,tier!=db"), ("watch", "1")]),
            "?labelSelector=app%3Dweb%2Ctier%21%3Ddb&watch=1"
        );
        assert_eq!(encode("env in (a, b)"), "env%20in%20%28a%2C%20b%29");
    }

    #[test]
    fn status_bodies_become_kubectl_errors() {
        let body = json!({"kind": "Status", "status": "Failure", "reason": "NotFound",
                          "message": "pods \"nope\" not found", "code": 404});
        assert_eq!(
            server_error(StatusCode::NOT_FOUND, &body).to_string(),
            "Error from server (NotFound): pods \"nope\" not found"
        );
        let plain = server_error(StatusCode::BAD_GATEWAY, &json!("upstream down"));
        assert_eq!(
            plain.to_string(),
            "Error from server: the server answered 502 Bad Gateway: upstream down"
        );
    }
}
