//! The API server (`skiff-control`) against a real store: Kubernetes'
//! semantics for create, get, list, update, patch, delete, watch,
//! subresources and server-side apply, checked over HTTP and in the store
//! itself, and kubectl 1.32 against the running server.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_proto::etcdserverpb::CompactionRequest;
use skiff_tests::control::Reply;
use skiff_tests::{Cluster, Control};

/// Bound on waiting for one watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// The nginx Pod of the Kubernetes documentation (pods/simple-pod.yaml).
const NGINX_POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.14.2
    ports:
    - containerPort: 80
";

/// controllers/replication.yaml of the Kubernetes documentation.
const NGINX_RC: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: nginx
spec:
  replicas: 3
  selector:
    app: nginx
  template:
    metadata:
      name: nginx
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
";

/// controllers/nginx-deployment.yaml of the Kubernetes documentation.
const NGINX_DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
";

/// The Service of the Kubernetes documentation (services-networking/service).
const MY_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
";

async fn start() -> (Cluster, Control) {
    let cluster = Cluster::start(1).await;
    let control = Control::start(&cluster).await;
    (cluster, control)
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": labels},
           "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}})
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn rv_of(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
        .parse()
        .unwrap()
}

/// Create, get and list; a list carries the revision it was read at, and
/// a list at that revision later shows the objects as they were.
#[tokio::test]
async fn create_get_list_at_revision() {
    let (cluster, control) = start().await;
    let api = control.api();
    let created = api
        .post(PODS, &pod("web", json!({"app": "web"})))
        .await
        .expect(201);
    let rv = rv_of(&created);
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(created["status"]["phase"], "Pending");
    let kv = cluster
        .must_get(0, "/registry/pods/default/web")
        .await
        .expect("the pod is in the store");
    assert_eq!(kv.mod_revision, rv);
    let got = api.get(&format!("{PODS}/web")).await.expect(200);
    assert_eq!(got, created);
    let again = api.post(PODS, &pod("web", json!({}))).await;
    assert_eq!(again.status.as_u16(), 409);
    assert_eq!(again.body["reason"], "AlreadyExists");
    assert_eq!(again.body["message"], "pods \"web\" already exists");

    let list = api.get(PODS).await.expect(200);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(names(&list), ["web"]);
    let list_rv = rv_of(&list);
    assert!(list_rv >= rv);
    api.post(PODS, &pod("db", json!({"app": "db"})))
        .await
        .expect(201);
    let mut changed = got.clone();
    changed["metadata"]["labels"] = json!({"app": "changed"});
    api.put(&format!("{PODS}/web"), &changed).await.expect(200);
    let now = api.get(PODS).await.expect(200);
    assert_eq!(names(&now), ["db", "web"]);
    let then = api
        .get(&format!(
            "{PODS}?resourceVersion={list_rv}&resourceVersionMatch=Exact"
        ))
        .await
        .expect(200);
    assert_eq!(names(&then), ["web"]);
    assert_eq!(then["items"][0]["metadata"]["labels"]["app"], "web");
    assert_eq!(rv_of(&then), list_rv);
    let all = api.get("/api/v1/pods").await.expect(200);
    assert_eq!(names(&all), ["db", "web"]);
    let mut generated = pod("", json!({}));
    generated["metadata"] = json!({"generateName": "web-"});
    let generated = api.post(PODS, &generated).await.expect(201);
    let name = generated["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("web-") && name.len() == "web-".len() + 5,
        "{name}"
    );
    api.delete(&format!("{PODS}/{name}")).await.expect(200);
    let missing = api.get(&format!("{PODS}/nope")).await;
    assert_eq!(missing.status.as_u16(), 404);
    assert_eq!(missing.body["message"], "pods \"nope\" not found");
    assert_eq!(missing.body["kind"], "Status");

    // A namespace that does not exist, and one created through the API.
    let other = api
        .post("/api/v1/namespaces/prod/pods", &pod("web", json!({})))
        .await;
    assert_eq!(other.status.as_u16(), 404);
    assert_eq!(other.body["message"], "namespaces \"prod\" not found");
    assert!(
        cluster
            .must_get(0, "/registry/pods/prod/web")
            .await
            .is_none()
    );
    api.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}),
    )
    .await
    .expect(201);
    api.post("/api/v1/namespaces/prod/pods", &pod("web", json!({})))
        .await
        .expect(201);
    let prod = api.get("/api/v1/namespaces/prod/pods").await.expect(200);
    assert_eq!(names(&prod), ["web"]);
    // Deleting a namespace deletes what is in it.
    let deleted = api.delete("/api/v1/namespaces/prod").await.expect(200);
    assert_eq!(deleted["status"]["phase"], "Terminating");
    assert!(
        cluster
            .must_get(0, "/registry/pods/prod/web")
            .await
            .is_none()
    );
    assert!(
        cluster
            .must_get(0, "/registry/namespaces/prod")
            .await
            .is_none()
    );
    assert_eq!(
        api.post("/api/v1/namespaces/prod/pods", &pod("web", json!({})))
            .await
            .status
            .as_u16(),
        404
    );
    assert_eq!(names(&api.get(PODS).await.expect(200)), ["db", "web"]);
}

/// An update with a stale resourceVersion is refused with Kubernetes'
/// message; an update without one is unconditional; of two concurrent
/// updates from the same version exactly one wins.
#[tokio::test]
async fn stale_and_concurrent_updates() {
    let (cluster, control) = start().await;
    let api = control.api();
    let v1 = api
        .post(PODS, &pod("web", json!({"v": "1"})))
        .await
        .expect(201);
    let mut v2 = v1.clone();
    v2["metadata"]["labels"] = json!({"v": "2"});
    let v2 = api.put(&format!("{PODS}/web"), &v2).await.expect(200);
    assert!(rv_of(&v2) > rv_of(&v1));
    let mut stale = v1.clone();
    stale["metadata"]["labels"] = json!({"v": "stale"});
    let refused = api.put(&format!("{PODS}/web"), &stale).await;
    assert_eq!(refused.status.as_u16(), 409);
    assert_eq!(refused.body["reason"], "Conflict");
    assert_eq!(
        refused.body["message"],
        "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let kv = cluster
        .must_get(0, "/registry/pods/default/web")
        .await
        .unwrap();
    assert_eq!(kv.mod_revision, rv_of(&v2));

    let mut unconditional = v1.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    unconditional["metadata"]["labels"] = json!({"v": "3"});
    let v3 = api
        .put(&format!("{PODS}/web"), &unconditional)
        .await
        .expect(200);
    assert_eq!(v3["metadata"]["labels"]["v"], "3");

    for round in 0..5 {
        let base = api.get(&format!("{PODS}/web")).await.expect(200);
        let mut a = base.clone();
        a["metadata"]["labels"] = json!({"writer": format!("a{round}")});
        let mut b = base.clone();
        b["metadata"]["labels"] = json!({"writer": format!("b{round}")});
        let path = format!("{PODS}/web");
        let (ra, rb) = tokio::join!(api.put(&path, &a), api.put(&path, &b));
        let codes = [ra.status.as_u16(), rb.status.as_u16()];
        assert!(
            codes == [200, 409] || codes == [409, 200],
            "round {round}: {codes:?}"
        );
        let winner: &Reply = if codes[0] == 200 { &ra } else { &rb };
        let now = api.get(&path).await.expect(200);
        assert_eq!(now["metadata"]["labels"], winner.body["metadata"]["labels"]);
        assert_eq!(rv_of(&now), rv_of(&winner.body));
    }
}

/// A watch from a resourceVersion sees every later change once, in order,
/// deletes included, and nothing from before; one from a compacted
/// revision gets a 410 Expired ERROR event.
#[tokio::test]
async fn watch_from_revision_and_after_compaction() {
    let (cluster, control) = start().await;
    let api = control.api();
    let first = api.post(PODS, &pod("a", json!({}))).await.expect(201);
    let start_rv = rv_of(&first);
    let mut watch = api
        .watch(&format!("{PODS}?watch=true&resourceVersion={start_rv}"))
        .await;
    let mut expected = Vec::new();
    let b = api.post(PODS, &pod("b", json!({}))).await.expect(201);
    expected.push(("ADDED", "b".to_string(), rv_of(&b)));
    for i in 0..3 {
        let mut a = api.get(&format!("{PODS}/a")).await.expect(200);
        a["metadata"]["labels"] = json!({"round": i.to_string()});
        let a = api.put(&format!("{PODS}/a"), &a).await.expect(200);
        expected.push(("MODIFIED", "a".to_string(), rv_of(&a)));
    }
    api.delete(&format!("{PODS}/b")).await.expect(200);
    let after_delete = cluster.must_revision(0).await;
    expected.push(("DELETED", "b".to_string(), after_delete));
    let c = api.post(PODS, &pod("c", json!({}))).await.expect(201);
    expected.push(("ADDED", "c".to_string(), rv_of(&c)));
    for (type_, name, rv) in &expected {
        let ev = watch.next(EVENT_TIMEOUT).await.expect("the watch is open");
        assert_eq!(ev["type"], *type_, "{ev}");
        assert_eq!(ev["object"]["metadata"]["name"], name.as_str(), "{ev}");
        assert_eq!(rv_of(&ev["object"]), *rv, "{ev}");
    }

    // A watch without a resourceVersion starts with the current objects.
    let mut fresh = api.watch(&format!("{PODS}?watch=1")).await;
    let mut initial = Vec::new();
    for _ in 0..2 {
        let ev = fresh.next(EVENT_TIMEOUT).await.unwrap();
        assert_eq!(ev["type"], "ADDED");
        initial.push(
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    initial.sort();
    assert_eq!(initial, ["a", "c"]);
    let d = api.post(PODS, &pod("d", json!({}))).await.expect(201);
    let ev = fresh.next(EVENT_TIMEOUT).await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), rv_of(&ev["object"])),
        (Some("ADDED"), rv_of(&d))
    );

    // Compact past the first revision: a watch from it is told to relist.
    let now = cluster.must_revision(0).await;
    cluster
        .client(0)
        .compact(CompactionRequest {
            revision: now,
            physical: true,
        })
        .await
        .expect("compact");
    let mut old = api
        .watch(&format!("{PODS}?watch=true&resourceVersion={start_rv}"))
        .await;
    let ev = old.next(EVENT_TIMEOUT).await.expect("an ERROR event");
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");
    assert!(old.next(EVENT_TIMEOUT).await.is_none(), "the stream ends");
    let gone = api
        .get(&format!(
            "{PODS}?resourceVersion={start_rv}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(gone.status.as_u16(), 410);
    // timeoutSeconds ends a watch.
    let mut short = api
        .watch(&format!(
            "{PODS}?watch=true&resourceVersion={now}&timeoutSeconds=1"
        ))
        .await;
    assert!(short.next(EVENT_TIMEOUT).await.is_none());
}

/// A watch that allows bookmarks gets one, with a resourceVersion no
/// older than the last event sent.
#[tokio::test]
async fn watch_bookmarks() {
    let (_cluster, control) = start().await;
    let api = control.api();
    let a = api.post(PODS, &pod("a", json!({}))).await.expect(201);
    let mut watch = api
        .watch(&format!(
            "{PODS}?watch=true&allowWatchBookmarks=true&resourceVersion={}",
            rv_of(&a)
        ))
        .await;
    let b = api.post(PODS, &pod("b", json!({}))).await.expect(201);
    let ev = watch.next(EVENT_TIMEOUT).await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), rv_of(&ev["object"])),
        (Some("ADDED"), rv_of(&b))
    );
    let bookmark = watch.next(EVENT_TIMEOUT).await.unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK", "{bookmark}");
    assert_eq!(bookmark["object"]["kind"], "Pod");
    assert!(rv_of(&bookmark["object"]) >= rv_of(&b), "{bookmark}");
}

/// Label and field selectors filter lists and watches; an object that
/// leaves the selection is sent as DELETED, one that enters it as ADDED.
#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let (_cluster, control) = start().await;
    let api = control.api();
    api.post(PODS, &pod("web-1", json!({"app": "web", "tier": "front"})))
        .await
        .expect(201);
    api.post(PODS, &pod("web-2", json!({"app": "web"})))
        .await
        .expect(201);
    let mut db = pod("db", json!({"app": "db"}));
    db["spec"]["nodeName"] = json!("node-1");
    api.post(PODS, &db).await.expect(201);

    let q = async |s: &str| api.get(&format!("{PODS}?{s}")).await;
    assert_eq!(
        names(&q("labelSelector=app%3Dweb").await.expect(200)),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(&q("labelSelector=app%21%3Dweb").await.expect(200)),
        ["db"]
    );
    assert_eq!(names(&q("labelSelector=tier").await.expect(200)), ["web-1"]);
    assert_eq!(
        names(
            &q("labelSelector=app+in+%28db%2Cweb%29%2Ctier")
                .await
                .expect(200)
        ),
        ["web-1"]
    );
    assert_eq!(
        names(&q("fieldSelector=metadata.name%3Dweb-2").await.expect(200)),
        ["web-2"]
    );
    assert_eq!(
        names(&q("fieldSelector=spec.nodeName%3Dnode-1").await.expect(200)),
        ["db"]
    );
    assert_eq!(
        names(&q("fieldSelector=spec.nodeName%3D").await.expect(200)),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(
            &api.get("/api/v1/pods?fieldSelector=metadata.namespace%3Ddefault")
                .await
                .expect(200)
        ),
        ["db", "web-1", "web-2"]
    );
    let bad = q("fieldSelector=spec.image%3Dx").await;
    assert_eq!(bad.status.as_u16(), 400);
    assert_eq!(bad.body["message"], "field label not supported: spec.image");

    let mut watch = api
        .watch(&format!("{PODS}?watch=true&labelSelector=app%3Dweb"))
        .await;
    for _ in 0..2 {
        assert_eq!(watch.next(EVENT_TIMEOUT).await.unwrap()["type"], "ADDED");
    }
    // db joins, web-2 leaves, an unrelated pod comes and goes, web-1 changes.
    let mut db = api.get(&format!("{PODS}/db")).await.expect(200);
    db["metadata"]["labels"] = json!({"app": "web"});
    api.put(&format!("{PODS}/db"), &db).await.expect(200);
    let mut w2 = api.get(&format!("{PODS}/web-2")).await.expect(200);
    w2["metadata"]["labels"] = json!({"app": "gone"});
    api.put(&format!("{PODS}/web-2"), &w2).await.expect(200);
    api.post(PODS, &pod("other", json!({"app": "other"})))
        .await
        .expect(201);
    api.delete(&format!("{PODS}/other")).await.expect(200);
    api.patch(
        &format!("{PODS}/web-1"),
        "application/merge-patch+json",
        r#"{"metadata": {"labels": {"tier": "back"}}}"#,
    )
    .await
    .expect(200);
    let seen: Vec<(String, String)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let ev = watch.next(EVENT_TIMEOUT).await.unwrap();
            v.push((
                ev["type"].as_str().unwrap().to_string(),
                ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
        v
    };
    let expect = |t: &str, n: &str| (t.to_string(), n.to_string());
    assert_eq!(
        seen,
        [
            expect("ADDED", "db"),
            expect("DELETED", "web-2"),
            expect("MODIFIED", "web-1")
        ]
    );
    // A field selector on a watch.
    let mut by_node = api
        .watch(&format!(
            "{PODS}?watch=true&fieldSelector=spec.nodeName%3Dnode-2"
        ))
        .await;
    let mut bound = pod("bound", json!({}));
    bound["spec"]["nodeName"] = json!("node-2");
    api.post(PODS, &pod("unbound", json!({}))).await.expect(201);
    api.post(PODS, &bound).await.expect(201);
    let ev = by_node.next(EVENT_TIMEOUT).await.unwrap();
    assert_eq!(ev["object"]["metadata"]["name"], "bound");
}

/// limit and continue read pages of one consistent snapshot: a pod created
/// between pages is not in them.
#[tokio::test]
async fn paged_lists_are_consistent() {
    let (_cluster, control) = start().await;
    let api = control.api();
    for i in 0..7 {
        api.post(PODS, &pod(&format!("p{i}"), json!({"n": i.to_string()})))
            .await
            .expect(201);
    }
    let first = api.get(&format!("{PODS}?limit=3")).await.expect(200);
    assert_eq!(names(&first), ["p0", "p1", "p2"]);
    let snapshot = rv_of(&first);
    api.post(PODS, &pod("p3a", json!({}))).await.expect(201);
    api.delete(&format!("{PODS}/p5")).await.expect(200);
    let mut all = names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();
    loop {
        let page = api
            .get(&format!("{PODS}?limit=3&continue={token}"))
            .await
            .expect(200);
        assert_eq!(rv_of(&page), snapshot);
        all.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => token = t.to_string(),
            _ => break,
        }
    }
    assert_eq!(all, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    // A limit counts selected objects only.
    let sel = api
        .get(&format!(
            "{PODS}?limit=2&labelSelector=n+in+%281%2C4%2C6%29"
        ))
        .await
        .expect(200);
    assert_eq!(names(&sel), ["p1", "p4"]);
    let token = sel["metadata"]["continue"].as_str().unwrap();
    let rest = api
        .get(&format!(
            "{PODS}?limit=2&labelSelector=n+in+%281%2C4%2C6%29&continue={token}"
        ))
        .await
        .expect(200);
    assert_eq!(names(&rest), ["p6"]);
    assert!(rest["metadata"].get("continue").is_none());
    let bad = api.get(&format!("{PODS}?continue=zz")).await;
    assert_eq!(bad.status.as_u16(), 400);
}

/// Invalid objects are refused naming the field, and nothing is written.
#[tokio::test]
async fn bad_input_writes_nothing() {
    let (cluster, control) = start().await;
    let api = control.api();
    let before = cluster.must_revision(0).await;
    let mut no_image = pod("web", json!({}));
    no_image["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let r = api.post(PODS, &no_image).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    assert_eq!(r.body["reason"], "Invalid");
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );
    assert_eq!(
        r.body["message"],
        "Pod \"web\" is invalid: spec.containers[0].image: Required value"
    );
    let mut unknown = pod("web", json!({}));
    unknown["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let r = api.post(PODS, &unknown).await;
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(r.body["reason"], "BadRequest");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.containers[0].imagePullPolicyy\""),
        "{}",
        r.body
    );
    let mut bad_name = pod("Web_1", json!({}));
    bad_name["metadata"]["labels"] = json!({"ok": "yes"});
    let r = api.post(PODS, &bad_name).await;
    assert_eq!(r.status.as_u16(), 422);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");
    let r = api
        .send(
            reqwest::Method::POST,
            PODS,
            "application/json",
            Some("{not json".into()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400);
    let r = api
        .send(reqwest::Method::POST, PODS, "text/plain", Some("x".into()))
        .await;
    assert_eq!(r.status.as_u16(), 415);
    let huge = "x".repeat(4 << 20);
    let r = api
        .send(reqwest::Method::POST, PODS, "application/json", Some(huge))
        .await;
    assert_eq!(r.status.as_u16(), 413);
    let r = api
        .post(&format!("{PODS}?dryRun=All"), &pod("dry", json!({})))
        .await;
    assert_eq!(r.status.as_u16(), 201);
    assert_eq!(r.body["metadata"]["name"], "dry");
    assert!(
        cluster
            .must_get(0, "/registry/pods/default/web")
            .await
            .is_none()
    );
    assert!(
        cluster
            .must_get(0, "/registry/pods/default/dry")
            .await
            .is_none()
    );
    assert_eq!(
        cluster.must_revision(0).await,
        before,
        "nothing was written"
    );

    // An invalid update leaves the stored object as it was.
    let created = api.post(PODS, &pod("web", json!({}))).await.expect(201);
    let mut bad = created.clone();
    bad["spec"]["containers"][0]["image"] = json!("");
    let r = api.put(&format!("{PODS}/web"), &bad).await;
    assert_eq!(r.status.as_u16(), 422);
    let r = api
        .patch(
            &format!("{PODS}/web"),
            "application/merge-patch+json",
            r#"{"spec": {"bogus": 1}}"#,
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    let kv = cluster
        .must_get(0, "/registry/pods/default/web")
        .await
        .unwrap();
    assert_eq!(kv.mod_revision, rv_of(&created));
    let r = api.get("/api/v1/namespaces/default/widgets").await;
    assert_eq!(r.status.as_u16(), 404);
    let r = api.delete("/api/v1/namespaces/default").await;
    assert_eq!(r.status.as_u16(), 403);
    assert_eq!(r.body["reason"], "Forbidden");
    let r = api
        .send(
            reqwest::Method::POST,
            &format!("{PODS}/web"),
            "application/json",
            Some("{}".into()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 405);
    assert_eq!(r.body["reason"], "MethodNotAllowed");
}

/// The status subresource changes only status, main-resource writes keep
/// it; scale reads and writes the replica count; finalizers hold a delete.
#[tokio::test]
async fn status_scale_and_finalizers() {
    let (_cluster, control) = start().await;
    let api = control.api();
    let manifest: Value = serde_json::from_str(
        r#"{"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.14.2"}]}}}}"#,
    )
    .unwrap();
    let created = api.post(DEPLOYMENTS, &manifest).await.expect(201);
    assert!(created.get("status").is_none());
    let path = format!("{DEPLOYMENTS}/web");
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 2, "readyReplicas": 1});
    with_status["spec"]["replicas"] = json!(9);
    let s = api
        .put(&format!("{path}/status"), &with_status)
        .await
        .expect(200);
    assert_eq!(s["status"]["readyReplicas"], 1);
    assert_eq!(s["spec"]["replicas"], 2, "a status write keeps the spec");
    let mut main = s.clone();
    main["status"] = json!({"replicas": 0});
    main["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
    let m = api.put(&path, &main).await.expect(200);
    assert_eq!(
        m["status"]["readyReplicas"], 1,
        "a main write keeps the status"
    );
    assert_eq!(m["metadata"]["generation"], 2);
    let p = api
        .patch(
            &format!("{path}/status"),
            "application/merge-patch+json",
            r#"{"status": {"availableReplicas": 1}}"#,
        )
        .await
        .expect(200);
    assert_eq!(p["status"]["availableReplicas"], 1);

    let scale = api.get(&format!("{path}/scale")).await.expect(200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let mut five = scale.clone();
    five["spec"]["replicas"] = json!(5);
    let s5 = api.put(&format!("{path}/scale"), &five).await.expect(200);
    assert_eq!(s5["spec"]["replicas"], 5);
    let stale = api.put(&format!("{path}/scale"), &five).await;
    assert_eq!(
        stale.status.as_u16(),
        409,
        "the scale's resourceVersion is a precondition"
    );
    let s7 = api
        .patch(
            &format!("{path}/scale"),
            "application/merge-patch+json",
            r#"{"spec": {"replicas": 7}}"#,
        )
        .await
        .expect(200);
    assert_eq!(s7["spec"]["replicas"], 7);
    let d = api.get(&path).await.expect(200);
    assert_eq!(d["spec"]["replicas"], 7);
    assert_eq!(d["status"]["availableReplicas"], 1);
    let negative = api
        .patch(
            &format!("{path}/scale"),
            "application/merge-patch+json",
            r#"{"spec": {"replicas": -1}}"#,
        )
        .await;
    assert_eq!(negative.status.as_u16(), 422);
    let rc = api
        .get("/api/v1/namespaces/default/replicationcontrollers/none/scale")
        .await;
    assert_eq!(rc.status.as_u16(), 404);
    assert_eq!(
        api.get(&format!("{PODS}/x/scale")).await.status.as_u16(),
        404,
        "pods have no scale"
    );

    // A pod with a finalizer is marked, then removed with its finalizer.
    let mut held = pod("held", json!({}));
    held["metadata"]["finalizers"] = json!(["skiff.io/test"]);
    api.post(PODS, &held).await.expect(201);
    let marked = api.delete(&format!("{PODS}/held")).await.expect(200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let still = api.get(&format!("{PODS}/held")).await.expect(200);
    assert!(still["metadata"]["deletionTimestamp"].is_string());
    api.patch(
        &format!("{PODS}/held"),
        "application/merge-patch+json",
        r#"{"metadata": {"finalizers": null}}"#,
    )
    .await
    .expect(200);
    assert_eq!(api.get(&format!("{PODS}/held")).await.status.as_u16(), 404);
}

/// Server-side apply: created, then unchanged without a write, configured
/// on a change; a field the manifest drops is removed; status and a
/// replica count set by scale survive.
#[tokio::test]
async fn server_side_apply() {
    let (cluster, control) = start().await;
    let api = control.api();
    let manifest = NGINX_DEPLOYMENT.replace("  replicas: 3\n", "");
    let path = format!("{DEPLOYMENTS}/nginx-deployment");
    let created = api.apply(&path, &manifest).await;
    assert_eq!(created.apply.as_deref(), Some("created"));
    let created = created.expect(201);
    let same = api.apply(&path, &manifest).await;
    assert_eq!(same.apply.as_deref(), Some("unchanged"));
    assert_eq!(
        same.rv(),
        created["metadata"]["resourceVersion"].as_str().unwrap()
    );
    let kv = cluster
        .must_get(0, "/registry/deployments/default/nginx-deployment")
        .await
        .unwrap();
    assert_eq!(
        kv.mod_revision,
        rv_of(&created),
        "an unchanged apply writes nothing"
    );

    api.patch(
        &format!("{path}/scale"),
        "application/merge-patch+json",
        r#"{"spec": {"replicas": 4}}"#,
    )
    .await
    .expect(200);
    api.patch(
        &format!("{path}/status"),
        "application/merge-patch+json",
        r#"{"status": {"replicas": 4, "readyReplicas": 2}}"#,
    )
    .await
    .expect(200);
    let again = api.apply(&path, &manifest).await;
    assert_eq!(again.apply.as_deref(), Some("unchanged"));
    assert_eq!(again.body["spec"]["replicas"], 4);
    let changed = manifest.replace("nginx:1.14.2", "nginx:1.16.1");
    let configured = api.apply(&path, &changed).await;
    assert_eq!(configured.apply.as_deref(), Some("configured"));
    let configured = configured.expect(200);
    assert_eq!(configured["spec"]["replicas"], 4, "the scaled count stays");
    assert_eq!(configured["status"]["readyReplicas"], 2, "status stays");
    assert_eq!(
        configured["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.16.1"
    );
    let unlabeled = changed.replace("  labels:\n    app: nginx\nspec:", "spec:");
    assert_ne!(unlabeled, changed);
    let removed = api.apply(&path, &unlabeled).await.expect(200);
    assert!(removed["metadata"].get("labels").is_none(), "{removed}");
    let dry = api
        .patch(
            &format!("{path}?fieldManager=test&dryRun=All"),
            "application/apply-patch+yaml",
            &changed,
        )
        .await;
    assert_eq!(dry.apply.as_deref(), Some("configured"));
    assert!(
        api.get(&path).await.expect(200)["metadata"]
            .get("labels")
            .is_none()
    );
    let wrong = api.apply(&format!("{DEPLOYMENTS}/other"), &changed).await;
    assert_eq!(wrong.status.as_u16(), 400);
}

/// The manifests of the Kubernetes documentation apply unchanged.
#[tokio::test]
async fn documentation_manifests_apply() {
    let (_cluster, control) = start().await;
    let api = control.api();
    for (path, manifest, kind) in [
        (format!("{PODS}/nginx"), NGINX_POD, "Pod"),
        (
            "/api/v1/namespaces/default/replicationcontrollers/nginx".to_string(),
            NGINX_RC,
            "ReplicationController",
        ),
        (
            format!("{DEPLOYMENTS}/nginx-deployment"),
            NGINX_DEPLOYMENT,
            "Deployment",
        ),
        (
            "/api/v1/namespaces/default/services/my-service".to_string(),
            MY_SERVICE,
            "Service",
        ),
    ] {
        let r = api.apply(&path, manifest).await;
        assert_eq!(r.apply.as_deref(), Some("created"), "{kind}: {}", r.body);
        assert_eq!(r.body["kind"], kind);
        let r = api.apply(&path, manifest).await;
        assert_eq!(r.apply.as_deref(), Some("unchanged"), "{kind}: {}", r.body);
    }
    let rc = api
        .get("/api/v1/namespaces/default/replicationcontrollers/nginx")
        .await
        .expect(200);
    assert_eq!(
        rc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let svc = api
        .get("/api/v1/namespaces/default/services/my-service")
        .await
        .expect(200);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
}

/// kubectl 1.32 against the running server: get (tables), -o yaml,
/// describe, client-side and server-side apply, scale, delete.
#[tokio::test]
async fn kubectl_against_the_server() {
    let (_cluster, control) = start().await;
    let api = control.api();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let pod_file = write(
        "pod.yaml",
        &NGINX_POD.replace("name: nginx\nspec", "name: web\nspec"),
    );
    let out = control.kubectl(&["apply", "-f", &pod_file], None).await;
    out.success();
    assert_eq!(out.stdout.trim(), "pod/web created");
    let out = control.kubectl(&["apply", "-f", &pod_file], None).await;
    assert_eq!(out.success().stdout.trim(), "pod/web unchanged");
    let changed = write(
        "pod2.yaml",
        &NGINX_POD
            .replace("name: nginx\nspec", "name: web\nspec")
            .replace("1.14.2", "1.16.1"),
    );
    let out = control.kubectl(&["apply", "-f", &changed], None).await;
    assert_eq!(out.success().stdout.trim(), "pod/web configured");
    let got = api.get(&format!("{PODS}/web")).await.expect(200);
    assert_eq!(got["spec"]["containers"][0]["image"], "nginx:1.16.1");

    let dry = write(
        "pod3.yaml",
        &NGINX_POD
            .replace("name: nginx\nspec", "name: web\nspec")
            .replace("1.14.2", "1.17.0"),
    );
    let out = control
        .kubectl(&["apply", "--dry-run=server", "-f", &dry], None)
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "pod/web configured (server dry run)"
    );
    let out = control.kubectl(&["get", "pods"], None).await;
    let lines = out.success().lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..4], ["web", "0/1", "Pending", "0"]);

    let out = control
        .kubectl(&["get", "pod", "web", "-o", "yaml"], None)
        .await;
    let yaml = &out.success().stdout;
    for needle in [
        "kind: Pod",
        "name: web",
        "image: nginx:1.16.1",
        "phase: Pending",
        "resourceVersion:",
    ] {
        assert!(yaml.contains(needle), "{needle} in\n{yaml}");
    }
    let out = control.kubectl(&["describe", "pod", "web"], None).await;
    let text = &out.success().stdout;
    for needle in [
        "Name:",
        "web",
        "Namespace:",
        "default",
        "Image:",
        "nginx:1.16.1",
        "Status:",
        "Pending",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }

    let deploy_file = write("deploy.yaml", NGINX_DEPLOYMENT);
    let out = control
        .kubectl(&["apply", "--server-side", "-f", &deploy_file], None)
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "deployment.apps/nginx-deployment serverside-applied"
    );
    let out = control
        .kubectl(&["apply", "--server-side", "-f", &deploy_file], None)
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "deployment.apps/nginx-deployment serverside-applied"
    );
    assert!(!out.stderr.contains("Warning"), "{out}");
    let out = control.kubectl(&["get", "deploy"], None).await;
    let lines = out.success().lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(lines[1].starts_with("nginx-deployment"), "{out}");
    assert_eq!(lines[1].split_whitespace().nth(1), Some("0/3"));
    let out = control
        .kubectl(
            &["scale", "deployment", "nginx-deployment", "--replicas=5"],
            None,
        )
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "deployment.apps/nginx-deployment scaled"
    );
    let out = control
        .kubectl(&["get", "deploy", "nginx-deployment"], None)
        .await;
    assert_eq!(
        out.success().lines()[1].split_whitespace().nth(1),
        Some("0/5")
    );
    let json_patch = r#"[{"op": "replace", "path": "/spec/replicas", "value": 2}]"#;
    let out = control
        .kubectl(
            &[
                "patch",
                "deploy",
                "nginx-deployment",
                "--type=json",
                "-p",
                json_patch,
            ],
            None,
        )
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "deployment.apps/nginx-deployment patched"
    );
    let out = control
        .kubectl(
            &[
                "patch",
                "deploy",
                "nginx-deployment",
                "-p",
                r#"{"metadata": {"labels": {"tier": "web"}}}"#,
            ],
            None,
        )
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "deployment.apps/nginx-deployment patched"
    );
    let d = api
        .get(&format!("{DEPLOYMENTS}/nginx-deployment"))
        .await
        .expect(200);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["metadata"]["labels"],
        json!({"app": "nginx", "tier": "web"})
    );

    let svc_file = write("svc.yaml", MY_SERVICE);
    let out = control.kubectl(&["apply", "-f", &svc_file], None).await;
    assert_eq!(out.success().stdout.trim(), "service/my-service created");
    let out = control.kubectl(&["get", "svc"], None).await;
    let lines = out.success().lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..4], ["my-service", "ClusterIP", "<none>", "<none>"]);
    // A ClusterIP Service gets a node port too (skiff proxies it there).
    let node_port: u16 = row[4]
        .strip_prefix("80:")
        .and_then(|p| p.strip_suffix("/TCP"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("PORT(S) {:?} is not 80:<nodePort>/TCP", row[4]));
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    let rc_file = write("rc.yaml", NGINX_RC);
    let out = control
        .kubectl(&["apply", "--server-side", "-f", &rc_file], None)
        .await;
    assert_eq!(
        out.success().stdout.trim(),
        "replicationcontroller/nginx serverside-applied"
    );
    let out = control.kubectl(&["get", "rc"], None).await;
    let lines = out.success().lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);

    api.post(
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "nodeInfo": {"kubeletVersion": "skiff-0.1.0"}}}),
    )
    .await
    .expect(201);
    let out = control.kubectl(&["get", "nodes"], None).await;
    let lines = out.success().lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..3], ["node-1", "Ready", "<none>"]);
    assert_eq!(row[4], "skiff-0.1.0");

    let out = control.kubectl(&["get", "all"], None).await;
    let text = &out.success().stdout;
    for needle in [
        "deployment.apps/nginx-deployment",
        "service/my-service",
        "replicationcontroller/nginx",
        "pod/web",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let out = control.kubectl(&["get", "ns"], None).await;
    assert!(out.success().stdout.contains("default"), "{out}");
    let out = control.kubectl(&["get", "pod", "nope"], None).await;
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("Error from server (NotFound): pods \"nope\" not found"),
        "{out}"
    );
    let bad = write(
        "bad.yaml",
        &NGINX_POD
            .replace("name: nginx\nspec", "name: bad\nspec")
            .replace("    ports:", "    portz:"),
    );
    let out = control.kubectl(&["apply", "-f", &bad], None).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("unknown field"), "{out}");
    assert!(out.stderr.contains("portz"), "{out}");
    let out = control.kubectl(&["delete", "pod", "web"], None).await;
    assert_eq!(out.success().stdout.trim(), "pod \"web\" deleted");
    assert_eq!(api.get(&format!("{PODS}/web")).await.status.as_u16(), 404);
}

/// Discovery, version, health and clean shutdown on SIGTERM.
#[tokio::test]
async fn discovery_and_shutdown() {
    let (_cluster, mut control) = start().await;
    let api = control.api();
    let v = api.get("/version").await.expect(200);
    assert_eq!(v["major"], "1");
    assert!(v["gitVersion"].as_str().unwrap().starts_with("v1."));
    let core = api.get("/api").await.expect(200);
    assert_eq!(core["versions"], json!(["v1"]));
    let groups = api.get("/apis").await.expect(200);
    assert_eq!(groups["groups"][0]["name"], "apps");
    let v1 = api.get("/api/v1").await.expect(200);
    let resources: Vec<&str> = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for r in [
        "pods",
        "pods/status",
        "nodes",
        "services",
        "replicationcontrollers/scale",
    ] {
        assert!(resources.contains(&r), "{r} in {resources:?}");
    }
    let apps = api.get("/apis/apps/v1").await.expect(200);
    assert_eq!(apps["groupVersion"], "apps/v1");
    api.get("/openapi/v3").await.expect(200);
    api.get("/openapi/v3/apis/apps/v1").await.expect(200);
    assert_eq!(api.get("/healthz").await.status.as_u16(), 200);
    // A watch is open when the server stops: it ends, and so does the server.
    let mut watch = api.watch(&format!("{PODS}?watch=true")).await;
    control.stop().await;
    assert!(watch.next(EVENT_TIMEOUT).await.is_none());
}

/// API servers keep no state: two of them against a three-member store
/// serve the same objects, a watch on one sees writes through the other,
/// and of two updates from one version, one through each, exactly one wins.
#[tokio::test]
async fn two_servers_share_one_store() {
    let cluster = Cluster::start(3).await;
    let first = Control::start(&cluster).await;
    let second = Control::start(&cluster).await;
    let (a, b) = (first.api(), second.api());
    let created = a.post(PODS, &pod("web", json!({}))).await.expect(201);
    let read = b.get(&format!("{PODS}/web")).await.expect(200);
    assert_eq!(read, created);
    let mut watch = b
        .watch(&format!(
            "{PODS}?watch=true&resourceVersion={}",
            rv_of(&created)
        ))
        .await;
    let mut one = created.clone();
    one["metadata"]["labels"] = json!({"by": "first"});
    let mut two = created.clone();
    two["metadata"]["labels"] = json!({"by": "second"});
    let path = format!("{PODS}/web");
    let (r1, r2) = tokio::join!(a.put(&path, &one), b.put(&path, &two));
    let mut codes = [r1.status.as_u16(), r2.status.as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 409]);
    let winner = if r1.status.as_u16() == 200 { r1 } else { r2 };
    let ev = watch.next(EVENT_TIMEOUT).await.unwrap();
    assert_eq!(ev["type"], "MODIFIED");
    assert_eq!(ev["object"], winner.body);
}

/// A watch through the API server outlives the store member serving it:
/// members are killed and restarted one after the other while pods are
/// created, and the watch sees each creation once, in order.
#[tokio::test]
async fn watch_survives_store_member_failures() {
    let mut cluster = Cluster::start(3).await;
    let control = Control::start(&cluster).await;
    let api = control.api();
    let first = api.post(PODS, &pod("first", json!({}))).await.expect(201);
    let mut watch = api
        .watch(&format!(
            "{PODS}?watch=true&resourceVersion={}",
            rv_of(&first)
        ))
        .await;
    let mut names = Vec::new();
    for i in 0..cluster.len() {
        cluster.kill(i).await;
        let name = format!("p{i}");
        // A create may time out while a leader is elected: try until it is
        // there (a 409 means an earlier try was applied).
        skiff_tests::wait_for(
            format!("create {name}"),
            skiff_tests::LEADER_TIMEOUT,
            async || {
                let r = api.post(PODS, &pod(&name, json!({}))).await;
                matches!(r.status.as_u16(), 201 | 409)
            },
        )
        .await;
        names.push(name);
        cluster.restart(i).await;
        cluster.wait_for_leader(skiff_tests::LEADER_TIMEOUT).await;
    }
    api.post(PODS, &pod("last", json!({}))).await.expect(201);
    names.push("last".to_string());
    let mut previous = rv_of(&first);
    for name in &names {
        let ev = watch.next(EVENT_TIMEOUT).await.expect("the watch goes on");
        assert_eq!(ev["type"], "ADDED", "{ev}");
        assert_eq!(ev["object"]["metadata"]["name"], name.as_str(), "{ev}");
        let rv = rv_of(&ev["object"]);
        assert!(rv > previous, "revisions go up: {rv} after {previous}");
        previous = rv;
    }
    // Every member was killed once, so the one serving the watch was too.
    assert!(
        control.log_tail(500).contains("watch resumed"),
        "{}",
        control.log_tail(50)
    );
}

/// The event recorder keeps one Event per object and reason: a second
/// occurrence counts, a third reason is its own Event, and the API server,
/// `skiff get events` and kubectl show them.
#[tokio::test]
async fn events_are_recorded_once_per_object_and_reason() {
    use skiff_client::{Client, ClientOptions};
    use skiff_model::core::ObjectReference;
    use skiff_runtime::{EventRecorder, EventType, Registry};

    let (cluster, control) = start().await;
    let api = control.api();
    let created = api.post(PODS, &pod("web", json!({}))).await.expect(201);
    let client = Client::connect(&[cluster.endpoints()], ClientOptions::default())
        .await
        .unwrap();
    let recorder = EventRecorder::new(Registry::new(client), "skiff-scheduler", "host-a");
    let involved = ObjectReference {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "web".into(),
        uid: created["metadata"]["uid"].as_str().unwrap().into(),
        api_version: "v1".into(),
        ..ObjectReference::default()
    };
    let first = recorder
        .record(
            &involved,
            EventType::Warning,
            "FailedScheduling",
            "0/1 nodes are available",
        )
        .await
        .unwrap();
    let second = recorder
        .record(
            &involved,
            EventType::Warning,
            "FailedScheduling",
            "0/2 nodes are available",
        )
        .await
        .unwrap();
    assert_eq!(first.key, second.key, "one event for one object and reason");
    recorder
        .record(
            &involved,
            EventType::Normal,
            "Scheduled",
            "Successfully assigned default/web to n1",
        )
        .await
        .unwrap();

    let list = api
        .get("/api/v1/namespaces/default/events")
        .await
        .expect(200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let failed = items
        .iter()
        .find(|e| e["reason"] == "FailedScheduling")
        .unwrap();
    assert_eq!(failed["count"], 2);
    assert_eq!(failed["message"], "0/2 nodes are available");
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["involvedObject"]["name"], "web");
    assert_eq!(failed["involvedObject"]["uid"], involved.uid.as_str());
    assert_eq!(failed["source"]["component"], "skiff-scheduler");
    assert!(failed["firstTimestamp"].is_string() && failed["lastTimestamp"].is_string());
    assert!(failed["firstTimestamp"].as_str() <= failed["lastTimestamp"].as_str());
    let scheduled = items.iter().find(|e| e["reason"] == "Scheduled").unwrap();
    assert_eq!(scheduled["count"], 1);

    // The events of the pod, selected as `kubectl describe` selects them.
    let selected = api
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb,involvedObject.kind%3DPod")
        .await
        .expect(200);
    assert_eq!(names(&selected).len(), 2, "{selected}");

    let out = control.skiff(&["get", "events"], None).await;
    out.success();
    assert!(out.stdout.contains("FailedScheduling"), "{}", out.stdout);
    let out = control.kubectl(&["get", "events"], None).await;
    out.success();
    assert!(
        out.stdout.contains("Warning") && out.stdout.contains("pod/web"),
        "{}",
        out.stdout
    );
}

/// A pod on a node is deleted gracefully, as in Kubernetes: the delete
/// marks it with a deletion timestamp its grace period ahead, and its
/// agent removes it once the containers stopped; `gracePeriodSeconds=0`
/// removes it at once. A pod on no node goes at once.
#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    let (_cluster, control) = start().await;
    let api = control.api();
    let mut bound = pod("bound", json!({}));
    bound["spec"]["nodeName"] = json!("node-1");
    bound["spec"]["terminationGracePeriodSeconds"] = json!(20);
    api.post(PODS, &bound).await.expect(201);
    let marked = api.delete(&format!("{PODS}/bound")).await.expect(200);
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 20);
    let stamp = marked["metadata"]["deletionTimestamp"].as_str().unwrap();
    let created = marked["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(stamp > created, "{stamp} is after {created}");
    let still = api.get(&format!("{PODS}/bound")).await.expect(200);
    assert_eq!(still["metadata"]["deletionTimestamp"], stamp);
    // A second delete changes nothing; a bad grace period is refused.
    let again = api.delete(&format!("{PODS}/bound")).await.expect(200);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        still["metadata"]["resourceVersion"]
    );
    let bad = api
        .delete(&format!("{PODS}/bound?gracePeriodSeconds=-1"))
        .await
        .expect(400);
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("gracePeriodSeconds"),
        "{bad}"
    );
    api.delete(&format!("{PODS}/bound?gracePeriodSeconds=0"))
        .await
        .expect(200);
    api.get(&format!("{PODS}/bound")).await.expect(404);

    api.post(PODS, &pod("unbound", json!({}))).await.expect(201);
    api.delete(&format!("{PODS}/unbound")).await.expect(200);
    api.get(&format!("{PODS}/unbound")).await.expect(404);
}
