//! Services end to end: a store, a leading skiff-control (the Endpoints
//! controller among its loops) and two skiff-agents on the real Docker
//! daemon, each with a proxy address of its own (127.0.0.2, 127.0.0.3),
//! and busybox httpd pods answering with their own names.
//!
//! Requests go through each agent's proxy on the Service's node port; the
//! helper [`http_get`] speaks HTTP/1.0 over a plain TCP connection.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::agent::{Agent, busybox_image};
use skiff_tests::wait::{pace, wait_for};
use skiff_tests::{Cluster, Control};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SERVICES: &str = "/api/v1/namespaces/default/services";
const ENDPOINTS: &str = "/api/v1/namespaces/default/endpoints";
const PODS: &str = "/api/v1/namespaces/default/pods";
const WAIT: Duration = Duration::from_secs(90);
/// Bound on one request through a proxy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon an Endpoints change must reach the proxies.
const CONVERGE: Duration = Duration::from_secs(10);
/// Requests per proxy.
const REQUESTS: usize = 60;

fn web(image: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: httpd
        image: {image}
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www\"]
        ports:
        - name: http
          containerPort: 8080
        resources:
          requests:
            cpu: 10m
            memory: 8Mi
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
"
    )
}

/// `GET /` over HTTP/1.0 at `addr`: the body of a 200 response, trimmed.
async fn http_get(addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
        if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
            return Err(format!("not a 200: {head:?}"));
        }
        Ok(body.trim().to_string())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The Endpoints object `name` (`Null` while there is none).
async fn endpoints(control: &Control, name: &str) -> Value {
    let reply = control.api().get(&format!("{ENDPOINTS}/{name}")).await;
    if reply.status.as_u16() == 404 {
        return Value::Null;
    }
    reply.expect(200)
}

/// Ready addresses of an Endpoints object: pod name → `ip:port`.
fn ready(ep: &Value) -> BTreeMap<String, SocketAddr> {
    let mut out = BTreeMap::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"][0]["port"].as_u64().unwrap_or(0) as u16;
        for a in subset["addresses"].as_array().into_iter().flatten() {
            let ip = a["ip"].as_str().unwrap_or("").parse().unwrap();
            out.insert(
                a["targetRef"]["name"].as_str().unwrap_or("").to_string(),
                SocketAddr::new(ip, port),
            );
        }
    }
    out
}

/// Waits until the Endpoints object `name` lists exactly `n` ready pods,
/// none of them not ready, each answering directly on its address; returns
/// them.
async fn wait_endpoints(control: &Control, name: &str, n: usize) -> BTreeMap<String, SocketAddr> {
    wait_for(format!("{n} ready endpoints of {name}"), WAIT, async || {
        let ep = endpoints(control, name).await;
        let all = ready(&ep);
        let not_ready = ep["subsets"].as_array().into_iter().flatten().any(|s| {
            s["notReadyAddresses"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        });
        if all.len() != n || not_ready {
            return Err(format!("endpoints: {ep}"));
        }
        for (pod, addr) in &all {
            let body = http_get(*addr).await?;
            if body != *pod {
                return Err(format!("{addr} answered {body:?}, not {pod:?}"));
            }
        }
        Ok(all)
    })
    .await
}

/// `count` requests through `addr`, one after the other: the answers.
async fn requests(addr: SocketAddr, count: usize) -> Vec<Result<String, String>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(http_get(addr).await);
    }
    out
}

fn node_port(svc: &Value) -> u16 {
    svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("an allocated node port") as u16
}

#[tokio::test]
async fn services_spread_env_delete_and_scale() {
    let image = busybox_image().await;
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let a = Agent::start(&cluster, "svc-a", &["--proxy-address", "127.0.0.2"]).await;
    let b = Agent::start(&cluster, "svc-b", &["--proxy-address", "127.0.0.3"]).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, web(image)).unwrap();
    control
        .skiff(&["apply", "-f", manifest.to_str().unwrap()], None)
        .await
        .success();
    let svc = control
        .api()
        .get(&format!("{SERVICES}/web"))
        .await
        .expect(200);
    let np = node_port(&svc);
    assert!((30000..=32767).contains(&np), "{svc}");
    let proxies: [SocketAddr; 2] = [
        format!("127.0.0.2:{np}").parse().unwrap(),
        format!("127.0.0.3:{np}").parse().unwrap(),
    ];

    // Three ready pods; each proxy spreads 60 requests over all three.
    let pods = wait_endpoints(&control, "web", 3).await;
    let names: BTreeSet<String> = pods.keys().cloned().collect();
    let ep = endpoints(&control, "web").await;
    let nodes: BTreeSet<&str> = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["addresses"][0]["nodeName"].as_str())
        .collect();
    assert_eq!(nodes, BTreeSet::from([a.node(), b.node()]), "{ep}");
    let pod_ips: Value = serde_json::from_str(
        ep["metadata"]["annotations"]["skiff.io/pod-ips"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pod_ips.as_object().unwrap().len(), 3, "{ep}");
    for proxy in proxies {
        let answers = requests(proxy, REQUESTS).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for answer in &answers {
            let body = answer
                .as_ref()
                .unwrap_or_else(|e| panic!("via {proxy}: {e}"));
            *seen.entry(body.clone()).or_default() += 1;
        }
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            names,
            "via {proxy}: {seen:?}"
        );
        // Round robin: each pod gets its third.
        assert!(
            seen.values().all(|n| *n == REQUESTS / 3),
            "via {proxy}: {seen:?}"
        );
    }

    // The CLI and kubectl show the node port and the endpoints.
    let out = control.skiff(&["get", "svc", "web"], None).await;
    out.success();
    assert!(out.stdout.contains(&format!("80:{np}/TCP")), "{out}");
    assert!(out.stdout.contains("NodePort"), "{out}");
    let out = control.skiff(&["get", "ep", "web"], None).await;
    out.success();
    for addr in pods.values() {
        assert!(
            out.stdout.contains(&addr.to_string()) || out.stdout.contains("more..."),
            "{out}"
        );
    }
    let out = control.skiff(&["describe", "svc", "web"], None).await;
    out.success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("NodePort:") && l.ends_with(&format!("http  {np}/TCP"))),
        "{out}"
    );
    let endpoints_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_default();
    assert_eq!(endpoints_line.matches(':').count(), 1 + 3, "{out}");
    let out = control.kubectl(&["get", "svc,endpoints"], None).await;
    out.success();
    assert!(out.stdout.contains(&format!("80:{np}/TCP")), "{out}");
    assert!(out.stdout.contains("endpoints/web"), "{out}");

    // A pod started now reaches the service through its variables.
    let client = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": image, "imagePullPolicy": "Never",
            "command": ["sh", "-c",
                "env | grep '^WEB_' | sort; \
                 for i in 1 2 3 4 5 6 7 8 9 10; do \
                   if wget -qO- http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/; then exit 0; fi; sleep 1; \
                 done; exit 1"]}]}
    });
    control.api().post(PODS, &client).await.expect(201);
    let pod = wait_for("the client pod to finish", WAIT, async || {
        let p = control
            .api()
            .get(&format!("{PODS}/client"))
            .await
            .expect(200);
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(p)
    })
    .await;
    let logs = control.skiff(&["logs", "client"], None).await;
    assert_eq!(pod["status"]["phase"], "Succeeded", "{logs}");
    assert!(
        logs.stdout.contains(&format!("WEB_SERVICE_PORT={np}"))
            && logs.stdout.contains(&format!("WEB_PORT_80_TCP_PORT={np}"))
            && logs.stdout.contains("WEB_SERVICE_PORT_HTTP="),
        "{logs}"
    );
    let answered = logs.stdout.lines().last().unwrap_or_default();
    assert!(names.contains(answered), "{logs}");

    // A pod deleted during a stream of requests: no request fails. The
    // stream runs until well after the Endpoints object dropped the pod.
    let victim = names.iter().next().unwrap().clone();
    let stream = tokio::spawn(async move {
        let mut results: Vec<(Instant, Result<String, String>)> = Vec::new();
        let mut tick = pace(Duration::from_millis(20));
        let stop = Instant::now() + Duration::from_secs(12);
        while Instant::now() < stop {
            tick.tick().await;
            let started = Instant::now();
            results.push((started, http_get(proxies[0]).await));
        }
        results
    });
    control
        .api()
        .delete(&format!("{PODS}/{victim}"))
        .await
        .expect(200);
    let deleted = Instant::now();
    let dropped = wait_for(
        "the deleted pod to leave the endpoints",
        CONVERGE,
        async || {
            let ep = endpoints(&control, "web").await;
            (!ready(&ep).contains_key(&victim)).then(Instant::now)
        },
    )
    .await;
    // The Endpoints object follows within a second of the deletion.
    let update = dropped.saturating_duration_since(deleted);
    eprintln!("the endpoints dropped the deleted pod {update:?} after its deletion");
    assert!(
        update < Duration::from_secs(1),
        "the endpoints dropped the pod {update:?} after its deletion"
    );
    let results = stream.await.unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(t, r)| {
            let at = t.saturating_duration_since(dropped).as_millis() as i128
                - dropped.saturating_duration_since(*t).as_millis() as i128;
            r.as_ref().err().map(|e| format!("{at:+} ms: {e}"))
        })
        .collect();
    let after = results.iter().filter(|(t, _)| *t > dropped).count();
    assert!(
        after > 50,
        "only {after} requests after the endpoint update"
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed (times relative to the endpoint update): {failed:?}",
        failed.len(),
        results.len()
    );
    let answered_after: BTreeSet<&str> = results
        .iter()
        .filter(|(t, _)| *t > dropped + Duration::from_secs(1))
        .filter_map(|(_, r)| r.as_deref().ok())
        .collect();
    assert!(
        !answered_after.contains(victim.as_str()),
        "{answered_after:?}"
    );

    // Scaled to one: every request reaches the one left.
    control
        .skiff(&["scale", "deploy", "web", "--replicas", "1"], None)
        .await
        .success();
    let left = wait_endpoints(&control, "web", 1).await;
    let last = left.keys().next().unwrap().clone();
    for proxy in proxies {
        wait_for(
            format!("{proxy} to reach only {last}"),
            CONVERGE,
            async || {
                let answers = requests(proxy, 3).await;
                answers.iter().all(|a| a.as_deref() == Ok(last.as_str()))
            },
        )
        .await;
        for answer in requests(proxy, REQUESTS).await {
            assert_eq!(answer.as_deref(), Ok(last.as_str()), "via {proxy}");
        }
    }
}

/// A Service created through the API: `(status, body)`.
async fn create_service(
    control: &Control,
    name: &str,
    ports: Value,
    selector: Value,
) -> (u16, Value) {
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                      "spec": {"type": "NodePort", "selector": selector, "ports": ports}});
    let reply = control.api().post(SERVICES, &body).await;
    (reply.status.as_u16(), reply.body)
}

fn cause_fields(status: &Value) -> Vec<&str> {
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str())
        .collect()
}

#[tokio::test]
async fn services_node_ports_and_proxy() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let agent = Agent::start(&cluster, "svc-bad", &["--proxy-address", "127.0.0.4"]).await;
    let api = control.api();
    let sel = json!({"app": "nothing"});

    // A node port taken: 422 naming the field; nothing stored, the holder
    // unchanged.
    let (code, first) = create_service(
        &control,
        "first",
        json!([{"port": 80, "nodePort": 30555}]),
        sel.clone(),
    )
    .await;
    assert_eq!(code, 201, "{first}");
    let (code, status) = create_service(
        &control,
        "second",
        json!([{"port": 80, "nodePort": 30555}]),
        sel.clone(),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid", "{status}");
    assert_eq!(
        cause_fields(&status),
        ["spec.ports[0].nodePort"],
        "{status}"
    );
    assert!(
        status["message"].as_str().unwrap().contains(
            "spec.ports[0].nodePort: Invalid value: 30555: provided port is already allocated"
        ),
        "{status}"
    );
    assert_eq!(
        api.get(&format!("{SERVICES}/second")).await.status.as_u16(),
        404
    );
    let now = api.get(&format!("{SERVICES}/first")).await.expect(200);
    assert_eq!(now, first);

    // Out of the range: 422.
    let (code, status) = create_service(
        &control,
        "third",
        json!([{"port": 80, "nodePort": 8080}]),
        sel.clone(),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        cause_fields(&status),
        ["spec.ports[0].nodePort"],
        "{status}"
    );
    assert!(
        status["message"].as_str().unwrap().contains("30000-32767"),
        "{status}"
    );
    assert_eq!(
        api.get(&format!("{SERVICES}/third")).await.status.as_u16(),
        404
    );

    // An update to a taken port is refused and changes nothing; one that
    // leaves nodePort out keeps the allocated one.
    let (code, other) = create_service(
        &control,
        "other",
        json!([{"port": 80, "nodePort": 30556}]),
        sel.clone(),
    )
    .await;
    assert_eq!(code, 201, "{other}");
    let mut changed = first.clone();
    changed["spec"]["ports"][0]["nodePort"] = json!(30556);
    let status = api
        .put(&format!("{SERVICES}/first"), &changed)
        .await
        .expect(422);
    assert_eq!(
        cause_fields(&status),
        ["spec.ports[0].nodePort"],
        "{status}"
    );
    assert_eq!(
        api.get(&format!("{SERVICES}/first")).await.expect(200),
        first
    );
    let mut omitted = first.clone();
    omitted["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    omitted["metadata"]["labels"] = json!({"touched": "yes"});
    let updated = api
        .put(&format!("{SERVICES}/first"), &omitted)
        .await
        .expect(200);
    assert_eq!(updated["spec"]["ports"][0]["nodePort"], 30555, "{updated}");

    // A deleted Service frees its node port (and its Endpoints go).
    api.delete(&format!("{SERVICES}/other")).await.expect(200);
    let (code, again) = create_service(
        &control,
        "again",
        json!([{"port": 80, "nodePort": 30556}]),
        sel.clone(),
    )
    .await;
    assert_eq!(code, 201, "{again}");

    // Concurrent creates: every allocated port differs; of those asking for
    // one port, exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let control_api = api.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("many-{i}")},
                              "spec": {"selector": {"app": "nothing"}, "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}});
            control_api.post(SERVICES, &body).await.expect(201)
        }));
    }
    let mut ports = BTreeSet::new();
    for t in tasks {
        let svc = t.await.unwrap();
        for p in svc["spec"]["ports"].as_array().unwrap() {
            assert!(ports.insert(p["nodePort"].as_u64().unwrap()), "{svc}");
        }
    }
    assert_eq!(ports.len(), 32);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let control_api = api.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("race-{i}")},
                              "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80, "nodePort": 31999}]}});
            control_api.post(SERVICES, &body).await.status.as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, [201, 422, 422, 422, 422, 422, 422, 422]);

    // A selector that matches nothing: an Endpoints object with no
    // addresses, and the proxy refuses connections at once.
    let ep = wait_for("the endpoints of first", WAIT, async || {
        let ep = endpoints(&control, "first").await;
        (!ep.is_null()).then_some(ep)
    })
    .await;
    assert!(ep.get("subsets").is_none(), "{ep}");
    let addr: SocketAddr = "127.0.0.4:30555".parse().unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("a prompt answer");
        let err = result.expect_err("the proxy refuses a service with no endpoints");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert!(http_get(addr).await.is_err());

    // A Service without a selector, with Endpoints written here: one
    // address refuses, one echoes (a listener of this test). Every
    // connection lands on the echo, the refusing one tried first or not.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let echoing = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
                      "spec": {"ports": [{"port": 7, "nodePort": 30557}]}});
    api.post(SERVICES, &body).await.expect(201);
    let subsets = |addrs: &[SocketAddr]| {
        json!(
            addrs
                .iter()
                .map(|a| json!({"addresses": [{"ip": a.ip().to_string()}],
                                          "ports": [{"port": a.port()}]}))
                .collect::<Vec<_>>()
        )
    };
    let manual = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "manual"},
                        "subsets": subsets(&[dead_addr, echo_addr])});
    api.post(ENDPOINTS, &manual).await.expect(201);
    let proxied: SocketAddr = "127.0.0.4:30557".parse().unwrap();
    let echo_once = async |stream: &mut TcpStream, text: &[u8]| -> Result<(), String> {
        stream.write_all(text).await.map_err(|e| e.to_string())?;
        let mut back = vec![0; text.len()];
        tokio::time::timeout(REQUEST_TIMEOUT, stream.read_exact(&mut back))
            .await
            .map_err(|_| "no echo".to_string())?
            .map_err(|e| e.to_string())?;
        (back == text).then_some(()).ok_or("wrong echo".to_string())
    };
    let mut held = wait_for("the proxy to forward manual", CONVERGE, async || {
        let mut s = TcpStream::connect(proxied)
            .await
            .map_err(|e| e.to_string())?;
        echo_once(&mut s, b"hello").await.map(|_| s)
    })
    .await;
    for i in 0..10 {
        let mut s = TcpStream::connect(proxied).await.expect("connect");
        echo_once(&mut s, format!("ping {i}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
    // The endpoints go: new connections are refused within a second, and
    // the connection in flight goes on.
    let current = api.get(&format!("{ENDPOINTS}/manual")).await.expect(200);
    let mut emptied = current.clone();
    emptied.as_object_mut().unwrap().remove("subsets");
    api.put(&format!("{ENDPOINTS}/manual"), &emptied)
        .await
        .expect(200);
    let updated = Instant::now();
    wait_for("the proxy to refuse manual", CONVERGE, async || {
        TcpStream::connect(proxied).await.is_err()
    })
    .await;
    assert!(
        updated.elapsed() < Duration::from_secs(1),
        "{:?}",
        updated.elapsed()
    );
    echo_once(&mut held, b"still there")
        .await
        .expect("an established connection outlives its endpoint's removal");
    drop(held);
    echoing.abort();

    // The Service goes: so do its Endpoints.
    api.delete(&format!("{SERVICES}/first")).await.expect(200);
    wait_for("the endpoints of first to go", CONVERGE, async || {
        endpoints(&control, "first").await.is_null()
    })
    .await;
    drop(agent);
}
