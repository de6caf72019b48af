//! A real `skiff-control` API server against a [`Cluster`], and a small HTTP
//! client for it.
//!
//! [`Control::start`] picks a free loopback port, starts the binary with
//! `--store` set to the cluster's endpoints and its log in a file of its
//! own, and returns once `/readyz` answers 200. Dropping it kills the
//! process; if the test is panicking it first prints the tail of the log.
//! [`Api`] sends JSON requests and reads watch streams line by line;
//! [`Control::skiff`] runs the `skiff` CLI against the server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::cmd::{self, CmdOutput};
use crate::{Cluster, EXIT_TIMEOUT, LOG_TAIL_LINES, START_TIMEOUT, bins};

/// Bound on one HTTP request of a test (watches have their own).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `skiff-control`; see the module docs.
pub struct Control {
    dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl Control {
    /// Starts `skiff-control` against every member of `cluster`, serving
    /// the API only (`--leader-elect=false`: no scheduler or controller
    /// touches what a test writes), and waits until it is ready.
    pub async fn start(cluster: &Cluster) -> Control {
        Control::start_with(cluster, &["--leader-elect=false"]).await
    }

    /// Starts `skiff-control` with the scheduler and the controllers (they
    /// run once it holds the leadership; a 2 s leader lease), and waits
    /// until its API is ready.
    pub async fn start_leading(cluster: &Cluster) -> Control {
        Control::start_with(cluster, &["--leader-elect-lease-duration", "2s"]).await
    }

    /// Starts `skiff-control` with `extra` arguments and waits until it is
    /// ready.
    pub async fn start_with(cluster: &Cluster, extra: &[&str]) -> Control {
        let dir = tempfile::Builder::new()
            .prefix("skiff-control-")
            .tempdir()
            .expect("create a temporary directory for skiff-control");
        let log_path = dir.path().join("control.log");
        let port = free_port();
        let log = std::fs::File::create(&log_path).expect("create the control log");
        let child = Command::new(bins::bin("skiff-control"))
            .args([
                "--store",
                &cluster.endpoints(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start skiff-control");
        let mut control = Control {
            dir: Some(dir),
            log_path,
            child: Some(child),
            port,
        };
        let api = control.api();
        let ready = crate::wait::try_wait_for(START_TIMEOUT, async || {
            if let Some(Ok(Some(status))) = control.child.as_mut().map(Child::try_wait) {
                return Err(format!("skiff-control exited with {status}"));
            }
            let resp = api
                .client
                .get(format!("{}/readyz", api.base))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() == StatusCode::OK {
                Ok(())
            } else {
                Err(format!("/readyz answered {}", resp.status()))
            }
        })
        .await;
        if let Err(why) = ready {
            panic!(
                "skiff-control did not become ready: {why}\n{}",
                control.log_tail(LOG_TAIL_LINES)
            );
        }
        control
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client for this server.
    pub fn api(&self) -> Api {
        Api::new(&self.url())
    }

    /// The Events in namespace `default` about the object named `name`
    /// (a node's events live there too).
    pub async fn events_for(&self, name: &str) -> Vec<Value> {
        let list = self
            .api()
            .get(&format!(
                "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}"
            ))
            .await
            .expect(200);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- skiff-control log ({}) ---\n{}\n--- end ---",
            self.log_path.display(),
            all[start..].join("\n")
        )
    }

    /// Runs `kubectl --server URL ARGS` (kubectl 1.32 from `KUBECTL_BIN` or
    /// `PATH`), with a discovery cache of this server's own.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let dir = self.dir.as_ref().expect("the control directory exists");
        let cache = dir.path().join("kube-cache");
        let mut all = vec![
            format!("--server={}", self.url()),
            format!("--cache-dir={}", cache.display()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let program = std::env::var_os("KUBECTL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let kubeconfig = dir.path().join("kubeconfig");
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        cmd::run(
            &program,
            &all,
            &[("KUBECONFIG", kubeconfig.as_str())],
            stdin,
        )
        .await
    }

    /// Runs the `skiff` CLI with `SKIFF_SERVER` set to this server.
    pub async fn skiff(&self, args: &[&str], stdin: Option<&str>) -> CmdOutput {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let url = self.url();
        cmd::run(
            &crate::bins::skiff_bin(),
            &args,
            &[("SKIFF_SERVER", url.as_str())],
            stdin,
        )
        .await
    }

    /// Stops the server with SIGTERM and asserts it exits cleanly in time.
    /// Kills `skiff-control` with SIGKILL, as a crash would: it resigns
    /// nothing and closes nothing.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("skiff-control is running");
        child.start_kill().expect("send SIGKILL");
        let _ = tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await;
    }

    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("skiff-control is running");
        let pid = child.id().expect("a running child has a pid");
        crate::cluster::send_signal(pid, libc::SIGTERM).expect("send SIGTERM");
        let status = tokio::time::timeout(EXIT_TIMEOUT, child.wait())
            .await
            .unwrap_or_else(|_| panic!("skiff-control did not exit within {EXIT_TIMEOUT:?}"))
            .expect("wait for skiff-control");
        assert!(
            status.success(),
            "skiff-control exited with {status}\n{}",
            self.log_tail(LOG_TAIL_LINES)
        );
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!("\n{}", self.log_tail(LOG_TAIL_LINES));
            if let Some(dir) = self.dir.take() {
                eprintln!("skiff-control log kept in {}", dir.keep().display());
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A response: status, headers we look at, and the body as JSON (`Null`
/// when it is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// The `X-Skiff-Apply` header, if any.
    pub apply: Option<String>,
    pub body: Value,
}

impl Reply {
    /// Panics with the body unless the status is `code`.
    #[track_caller]
    pub fn expect(self, code: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            code,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// `metadata.resourceVersion` of the body.
    pub fn rv(&self) -> String {
        self.body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A small HTTP client for the API.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("build an HTTP client"),
            base: base.to_string(),
        }
    }

    /// Sends `method path` with `body` (if any) of `content_type`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let apply = resp
            .headers()
            .get("x-skiff-apply")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            apply,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, "", None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            path,
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::PUT,
            path,
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &str) -> Reply {
        self.send(Method::PATCH, path, content_type, Some(body.to_string()))
            .await
    }

    /// Server-side apply of a manifest (YAML or JSON).
    pub async fn apply(&self, path: &str, manifest: &str) -> Reply {
        self.patch(
            &format!("{path}?fieldManager=test"),
            "application/apply-patch+yaml",
            manifest,
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, "", None).await
    }

    /// Opens a watch (`path` includes `watch=true` and its other parameters).
    pub async fn watch(&self, path: &str) -> Watch {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "watch {path}");
        Watch {
            resp,
            buf: Vec::new(),
        }
    }
}

/// A watch stream, read one event at a time.
pub struct Watch {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event, or `None` when the stream ended; panics when none
    /// arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!(
                        "watch line is not JSON ({e}): {}",
                        String::from_utf8_lossy(&line)
                    )
                }));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("watch stream failed: {e}"),
                Err(_) => panic!("no watch event within {timeout:?}"),
            }
        }
    }
}
