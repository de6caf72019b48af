//! `proxy-bench`: the node proxy's added latency and its throughput,
//! against a direct connection to the pod.
//!
//! Starts a one-member store, a leading skiff-control and one skiff-agent
//! (proxy address 127.0.0.5) on the machine's Docker daemon, and a pod
//! running busybox httpd behind a NodePort Service, serving a small page
//! and a large file. Then, for each of `--runs` rounds, alternating the two
//! paths (direct: the pod's node address and host port; proxied: the proxy
//! address and the node port):
//!
//! - latency: `--requests` HTTP/1.0 GETs of the small page one after the
//!   other, each on a new connection: requests/s, p50 and p99;
//! - throughput: GETs of the large file (`--file-mib` MiB), one at a time,
//!   for at least a second: MiB/s.
//!
//! Prints the medians over the rounds as a table with the proxy/direct
//! ratios. Binaries come from the directory of this program (or
//! `SKIFF_BIN_DIR`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use skiff_tests::agent::{Agent, busybox_image};
use skiff_tests::wait::wait_for;
use skiff_tests::{Cluster, Control};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROXY_ADDRESS: &str = "127.0.0.5";
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const BULK_MIN_TIME: Duration = Duration::from_secs(1);

struct Options {
    runs: usize,
    requests: usize,
    file_mib: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        runs: 5,
        requests: 2000,
        file_mib: 256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{flag} {value:?}: a number of at least 1"))?;
        match flag.as_str() {
            "--runs" => o.runs = n,
            "--requests" => o.requests = n,
            "--file-mib" => o.file_mib = n,
            _ => bail!("unknown flag {flag} (--runs N, --requests N, --file-mib N)"),
        }
    }
    Ok(o)
}

/// One HTTP/1.0 GET of `path` on a new connection: the body's length.
async fn get(addr: SocketAddr, path: &str, buf: &mut Vec<u8>) -> anyhow::Result<usize> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await?;
        buf.clear();
        s.read_to_end(buf).await?;
        anyhow::Ok(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("request timed out")??;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("not an HTTP response")?;
    if !buf.starts_with(b"HTTP/1.") || !buf[..head_end].windows(5).any(|w| w == b" 200 ") {
        bail!("not a 200: {}", String::from_utf8_lossy(&buf[..head_end]));
    }
    Ok(buf.len() - head_end - 4)
}

struct Latency {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn latency(addr: SocketAddr, n: usize) -> anyhow::Result<Latency> {
    let mut times = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(4096);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        get(addr, "/", &mut buf).await?;
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok(Latency {
        requests_per_s: n as f64 / total.as_secs_f64(),
        p50_ms: at(0.50).as_secs_f64() * 1e3,
        p99_ms: at(0.99).as_secs_f64() * 1e3,
    })
}

/// MiB/s of whole transfers of the large file, for at least a second.
async fn throughput(addr: SocketAddr, file_bytes: usize) -> anyhow::Result<f64> {
    let mut buf = Vec::with_capacity(file_bytes + 4096);
    let start = Instant::now();
    let mut bytes = 0;
    while start.elapsed() < BULK_MIN_TIME {
        let n = get(addr, "/big", &mut buf).await?;
        if n != file_bytes {
            bail!("got {n} bytes of {file_bytes}");
        }
        bytes += n;
    }
    Ok(bytes as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let _agent = Agent::start(&cluster, "proxy-bench", &["--proxy-address", PROXY_ADDRESS]).await;
    let api = control.api();
    let script = format!(
        "mkdir -p /www && echo hello > /www/index.html && \
         dd if=/dev/zero of=/www/big bs=1048576 count={} 2>/dev/null && \
         exec httpd -f -p 8080 -h /www",
        o.file_mib
    );
    api.post(
        "/api/v1/namespaces/default/pods",
        &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "bench", "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "httpd", "image": image, "imagePullPolicy": "Never",
                         "command": ["sh", "-c", script],
                         "ports": [{"name": "http", "containerPort": 8080}]}]}}),
    )
    .await
    .expect(201);
    let svc = api
        .post(
            "/api/v1/namespaces/default/services",
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench"},
                    "spec": {"type": "NodePort", "selector": {"app": "bench"},
                             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        )
        .await
        .expect(201);
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let proxied: SocketAddr = format!("{PROXY_ADDRESS}:{node_port}").parse()?;
    let direct: SocketAddr = wait_for("the pod's endpoint", SETUP_TIMEOUT, async || {
        let ep: Value = api
            .get("/api/v1/namespaces/default/endpoints/bench")
            .await
            .body;
        let subset = &ep["subsets"][0];
        let ip = subset["addresses"][0]["ip"].as_str()?;
        let port = subset["ports"][0]["port"].as_u64()?;
        let addr: SocketAddr = format!("{ip}:{port}").parse().ok()?;
        let mut buf = Vec::new();
        for a in [addr, proxied] {
            get(a, "/big", &mut buf).await.ok()?;
        }
        Some(addr)
    })
    .await;
    let file_bytes = o.file_mib << 20;
    eprintln!(
        "direct {direct}, proxied {proxied}; {} runs of {} requests and bulk GETs of {} MiB",
        o.runs, o.requests, o.file_mib
    );
    // Warm both paths.
    latency(direct, 200).await?;
    latency(proxied, 200).await?;
    let (mut d_lat, mut p_lat, mut d_bulk, mut p_bulk) = (vec![], vec![], vec![], vec![]);
    for run in 0..o.runs {
        // Alternate which path goes first.
        let order = if run % 2 == 0 {
            [direct, proxied]
        } else {
            [proxied, direct]
        };
        for addr in order {
            let l = latency(addr, o.requests).await?;
            let t = throughput(addr, file_bytes).await?;
            let (lat, bulk) = if addr == direct {
                (&mut d_lat, &mut d_bulk)
            } else {
                (&mut p_lat, &mut p_bulk)
            };
            eprintln!(
                "run {run} {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {:.0} MiB/s",
                if addr == direct { "direct" } else { "proxied" },
                l.requests_per_s,
                l.p50_ms,
                l.p99_ms,
                t
            );
            lat.push(l);
            bulk.push(t);
        }
    }
    let m = |v: &[Latency], f: fn(&Latency) -> f64| median(v.iter().map(f).collect());
    let rows = [
        (
            "small GETs, one connection each (requests/s)",
            m(&d_lat, |l| l.requests_per_s),
            m(&p_lat, |l| l.requests_per_s),
        ),
        (
            "latency p50 (ms)",
            m(&d_lat, |l| l.p50_ms),
            m(&p_lat, |l| l.p50_ms),
        ),
        (
            "latency p99 (ms)",
            m(&d_lat, |l| l.p99_ms),
            m(&p_lat, |l| l.p99_ms),
        ),
        (
            "bulk transfer (MiB/s)",
            median(d_bulk.clone()),
            median(p_bulk.clone()),
        ),
    ];
    println!(
        "| measure (median of {} runs) | direct | through the proxy | proxy/direct |",
        o.runs
    );
    println!("|---|---|---|---|");
    for (name, d, p) in rows {
        let prec = if name.contains("ms") { 3 } else { 0 };
        println!("| {name} | {d:.prec$} | {p:.prec$} | {:.2} |", p / d);
    }
    println!(
        "| added latency p50 / p99 (ms) | - | {:.3} / {:.3} | - |",
        m(&p_lat, |l| l.p50_ms) - m(&d_lat, |l| l.p50_ms),
        m(&p_lat, |l| l.p99_ms) - m(&d_lat, |l| l.p99_ms)
    );
    Ok(())
}
