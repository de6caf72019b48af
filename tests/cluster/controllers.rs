//! The replica controllers in a real skiff-control against a real store:
//! a ReplicaSet and a ReplicationController hold their counts through
//! scaling, deleted pods and orphans that match.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::wait::wait_for;
use skiff_tests::{Cluster, Control};

const PODS: &str = "/api/v1/namespaces/default/pods";
const WAIT: Duration = Duration::from_secs(30);

/// The active pods whose controller has `uid`, by name.
async fn owned(control: &Control, uid: &str) -> Vec<String> {
    let list = control.api().get(PODS).await.expect(200);
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["uid"] == uid && o["controller"] == true))
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

async fn wait_count(control: &Control, uid: &str, n: usize) -> Vec<String> {
    wait_for(format!("{n} pods owned by {uid}"), WAIT, async || {
        let names = owned(control, uid).await;
        if names.len() == n {
            Ok(names)
        } else {
            Err(format!("{} pods: {names:?}", names.len()))
        }
    })
    .await
}

const RS: &str = "\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
spec:
  replicas: 3
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
    spec:
      containers:
      - name: php-redis
        image: us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5
";

#[tokio::test]
async fn controllers_replicaset_holds_its_count() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let api = control.api();
    let rs = api
        .apply("/apis/apps/v1/namespaces/default/replicasets/frontend", RS)
        .await
        .expect(201);
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let first = wait_count(&control, &uid, 3).await;
    for name in &first {
        assert!(name.starts_with("frontend-"), "{name}");
        let p = api.get(&format!("{PODS}/{name}")).await.expect(200);
        assert_eq!(p["metadata"]["labels"]["tier"], "frontend");
        assert_eq!(p["spec"]["restartPolicy"], "Always");
    }
    wait_for("the status to count 3", WAIT, async || {
        let rs = api
            .get("/apis/apps/v1/namespaces/default/replicasets/frontend")
            .await
            .expect(200);
        rs["status"]["replicas"] == 3 && rs["status"]["observedGeneration"] == 1
    })
    .await;

    // A deleted pod is replaced.
    api.delete(&format!("{PODS}/{}", first[0]))
        .await
        .expect(200);
    let after = wait_for("a replacement", WAIT, async || {
        let names = owned(&control, &uid).await;
        (names.len() == 3 && !names.contains(&first[0])).then_some(names)
    })
    .await;
    assert_eq!(after.iter().filter(|n| first.contains(n)).count(), 2);

    // Scaled up and down through the scale subresource.
    let out = control
        .skiff(&["scale", "rs", "frontend", "--replicas", "5"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["replicaset.apps/frontend scaled"],
        "{out}"
    );
    wait_count(&control, &uid, 5).await;
    control
        .skiff(&["scale", "rs", "frontend", "--replicas", "1"], None)
        .await
        .success();
    wait_count(&control, &uid, 1).await;
    // What the controller did is in the ReplicaSet's events.
    wait_for(
        "SuccessfulCreate and SuccessfulDelete events",
        WAIT,
        async || {
            let list = api
            .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dfrontend")
            .await
            .expect(200);
            let reasons: Vec<&str> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["reason"].as_str())
                .collect();
            if reasons.contains(&"SuccessfulCreate") && reasons.contains(&"SuccessfulDelete") {
                Ok(())
            } else {
                Err(format!("{reasons:?}"))
            }
        },
    )
    .await;
    let out = control.skiff(&["describe", "rs", "frontend"], None).await;
    assert!(out.success().stdout.contains("SuccessfulCreate"), "{out}");
    wait_for("the status to count 1", WAIT, async || {
        let rs = api
            .get("/apis/apps/v1/namespaces/default/replicasets/frontend")
            .await
            .expect(200);
        rs["status"]["replicas"] == 1 && rs["status"]["observedGeneration"] == 3
    })
    .await;

    // A matching orphan is adopted, and then one of the two goes.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"tier": "frontend"}},
        "spec": {"containers": [{"name": "a", "image": "busybox"}]}});
    api.post(PODS, &orphan).await.expect(201);
    wait_for("the orphan to be adopted or replaced", WAIT, async || {
        let p = api.get(&format!("{PODS}/orphan")).await;
        let adopted_or_gone = p.status.as_u16() == 404
            || p.expect(200)["metadata"]["ownerReferences"][0]["uid"] == uid.as_str();
        adopted_or_gone && owned(&control, &uid).await.len() == 1
    })
    .await;
    // A pod that does not match is left alone.
    let other = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other", "labels": {"tier": "backend"}},
        "spec": {"containers": [{"name": "a", "image": "busybox"}]}});
    api.post(PODS, &other).await.expect(201);
    control
        .skiff(&["scale", "rs", "frontend", "--replicas", "2"], None)
        .await
        .success();
    wait_count(&control, &uid, 2).await;
    let other: Value = api.get(&format!("{PODS}/other")).await.expect(200);
    assert!(other["metadata"]["ownerReferences"].is_null(), "{other}");
}

const RC: &str = "\
apiVersion: v1
kind: ReplicationController
metadata:
  name: nginx
spec:
  replicas: 2
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

#[tokio::test]
async fn controllers_replication_controller_scales() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let api = control.api();
    let rc = api
        .apply(
            "/api/v1/namespaces/default/replicationcontrollers/nginx",
            RC,
        )
        .await
        .expect(201);
    let uid = rc["metadata"]["uid"].as_str().unwrap().to_string();
    wait_count(&control, &uid, 2).await;
    let out = control
        .skiff(&["scale", "rc", "nginx", "--replicas", "4"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["replicationcontroller/nginx scaled"],
        "{out}"
    );
    wait_count(&control, &uid, 4).await;
    wait_for("the RC status to count 4", WAIT, async || {
        let rc = api
            .get("/api/v1/namespaces/default/replicationcontrollers/nginx")
            .await
            .expect(200);
        rc["status"]["replicas"] == 4
    })
    .await;
    let out = control.skiff(&["get", "rc", "nginx"], None).await;
    let text = out.success().stdout.clone();
    assert!(text.contains("nginx") && text.contains(" 4 "), "{text}");
}

/// Deleting an owner deletes its pods (background propagation); pods of
/// other owners and pods with no owner stay.
#[tokio::test]
async fn controllers_deleting_an_owner_deletes_its_pods() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let api = control.api();
    let rc = api
        .apply(
            "/api/v1/namespaces/default/replicationcontrollers/nginx",
            RC,
        )
        .await
        .expect(201);
    let rc_uid = rc["metadata"]["uid"].as_str().unwrap().to_string();
    let rs = api
        .apply("/apis/apps/v1/namespaces/default/replicasets/frontend", RS)
        .await
        .expect(201);
    let rs_uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let loner = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "loner", "labels": {"app": "other"}},
        "spec": {"containers": [{"name": "a", "image": "busybox"}]}});
    api.post(PODS, &loner).await.expect(201);
    wait_count(&control, &rc_uid, 2).await;
    wait_count(&control, &rs_uid, 3).await;

    api.delete("/api/v1/namespaces/default/replicationcontrollers/nginx")
        .await
        .expect(200);
    wait_for("the RC's pods to be deleted", WAIT, async || {
        let list = api.get(PODS).await.expect(200);
        let left: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == rc_uid.as_str())
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?}"))
        }
    })
    .await;
    assert_eq!(
        owned(&control, &rs_uid).await.len(),
        3,
        "the ReplicaSet's pods stay"
    );
    api.get(&format!("{PODS}/loner")).await.expect(200);

    // Orphaning: the ReplicaSet goes, its pods stay, owned by nobody.
    let pods_before = owned(&control, &rs_uid).await;
    let out = control
        .skiff(&["delete", "rs", "frontend", "--cascade=orphan"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["replicaset.apps \"frontend\" deleted"],
        "{out}"
    );
    api.get("/apis/apps/v1/namespaces/default/replicasets/frontend")
        .await
        .expect(404);
    for name in &pods_before {
        let p = api.get(&format!("{PODS}/{name}")).await.expect(200);
        assert!(p["metadata"]["ownerReferences"].is_null(), "{p}");
    }
}

/// A foreground delete: the Deployment stays, marked, until its
/// ReplicaSet and pods are gone, then goes itself.
#[tokio::test]
async fn controllers_foreground_deletion_waits_for_dependents() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let api = control.api();
    api.apply(
        "/apis/apps/v1/namespaces/default/deployments/nginx-deployment",
        DEPLOYMENT,
    )
    .await
    .expect(201);
    wait_for("3 pods of the deployment", WAIT, async || {
        let pods = api
            .get(&format!("{PODS}?labelSelector=app%3Dnginx"))
            .await
            .expect(200);
        pods["items"].as_array().unwrap().len() == 3
    })
    .await;
    let marked = api
        .delete("/apis/apps/v1/namespaces/default/deployments/nginx-deployment?propagationPolicy=Foreground")
        .await
        .expect(200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    wait_for(
        "the deployment, its ReplicaSet and its pods to be gone",
        WAIT,
        async || {
            let d = api
                .get("/apis/apps/v1/namespaces/default/deployments/nginx-deployment")
                .await;
            let rs = api
                .get("/apis/apps/v1/namespaces/default/replicasets")
                .await
                .expect(200);
            let pods = api
                .get(&format!("{PODS}?labelSelector=app%3Dnginx"))
                .await
                .expect(200);
            let left = (
                d.status.as_u16(),
                rs["items"].as_array().unwrap().len(),
                pods["items"].as_array().unwrap().len(),
            );
            if left == (404, 0, 0) {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
}

const DEPLOYMENT: &str = "\
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

/// The ReplicaSets of the deployment, as (revision, replicas, image).
async fn replicasets(control: &Control) -> Vec<(String, i64, String)> {
    let list = control
        .api()
        .get("/apis/apps/v1/namespaces/default/replicasets")
        .await
        .expect(200);
    let mut out: Vec<(String, i64, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(-1),
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A Deployment makes a ReplicaSet per template, keeps the availability
/// its strategy asks for while its pods are not ready (no node runs them
/// here), lists and undoes revisions, and takes re-applies of its
/// manifest after the controller wrote its status.
#[tokio::test]
async fn controllers_deployment_revisions_without_ready_pods() {
    let cluster = Cluster::start(1).await;
    let control = Control::start_leading(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let v1 = write("v1.yaml", DEPLOYMENT);
    let out = control.skiff(&["apply", "-f", &v1], None).await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps/nginx-deployment created"],
        "{out}"
    );
    wait_for("the first ReplicaSet and its 3 pods", WAIT, async || {
        let rs = replicasets(&control).await;
        let pods = control
            .api()
            .get(&format!("{PODS}?labelSelector=app%3Dnginx"))
            .await
            .expect(200);
        let n = pods["items"].as_array().unwrap().len();
        (rs == [("1".to_string(), 3, "nginx:1.14.2".to_string())] && n == 3)
            .then_some(())
            .ok_or(format!("{rs:?}, {n} pods"))
    })
    .await;
    let d = control
        .api()
        .get("/apis/apps/v1/namespaces/default/deployments/nginx-deployment")
        .await
        .expect(200);
    let rs_list = control
        .api()
        .get("/apis/apps/v1/namespaces/default/replicasets")
        .await
        .expect(200);
    let rs_name = rs_list["items"][0]["metadata"]["name"].as_str().unwrap();
    assert!(rs_name.starts_with("nginx-deployment-"), "{rs_name}");
    let hash = &rs_list["items"][0]["metadata"]["labels"]["pod-template-hash"];
    assert_eq!(
        rs_name,
        format!("nginx-deployment-{}", hash.as_str().unwrap())
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );

    // The controller has written the status: the manifest applies again.
    wait_for("the deployment status", WAIT, async || {
        let d = control
            .api()
            .get("/apis/apps/v1/namespaces/default/deployments/nginx-deployment")
            .await
            .expect(200);
        d["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    })
    .await;
    let out = control.skiff(&["apply", "-f", &v1], None).await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps/nginx-deployment unchanged"],
        "{out}"
    );
    let v2 = write("v2.yaml", &DEPLOYMENT.replace("replicas: 3", "replicas: 2"));
    let out = control.skiff(&["apply", "-f", &v2], None).await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps/nginx-deployment configured"],
        "{out}"
    );
    wait_for("the ReplicaSet scaled to 2", WAIT, async || {
        replicasets(&control).await == [("1".to_string(), 2, "nginx:1.14.2".to_string())]
    })
    .await;

    // A new image: a second ReplicaSet, surging by one (25% of 2, rounded
    // up) while none of the old pods may go (none is available).
    let v3 = write(
        "v3.yaml",
        &DEPLOYMENT
            .replace("replicas: 3", "replicas: 2")
            .replace("1.14.2", "1.16.1"),
    );
    control.skiff(&["apply", "-f", &v3], None).await.success();
    wait_for("the second ReplicaSet", WAIT, async || {
        let rs = replicasets(&control).await;
        (rs == [
            ("1".to_string(), 2, "nginx:1.14.2".to_string()),
            ("2".to_string(), 1, "nginx:1.16.1".to_string()),
        ])
        .then_some(())
        .ok_or(format!("{rs:?}"))
    })
    .await;
    let out = control
        .skiff(&["rollout", "history", "deploy/nginx-deployment"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        [
            // kubectl's header line ends with a space too.
            "deployment.apps/nginx-deployment ",
            "REVISION  CHANGE-CAUSE",
            "1         <none>",
            "2         <none>",
            "",
        ],
        "{out}"
    );
    // The rollout cannot finish: status reports progress, then times out.
    let out = control
        .skiff(
            &[
                "rollout",
                "status",
                "deploy/nginx-deployment",
                "--timeout",
                "2s",
            ],
            None,
        )
        .await;
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stdout
            .starts_with("Waiting for deployment \"nginx-deployment\" rollout to finish: "),
        "{out}"
    );
    assert_eq!(
        out.stderr.trim(),
        "error: timed out waiting for the condition"
    );

    // Undo: the first template comes back as revision 3.
    let out = control
        .skiff(&["rollout", "undo", "deploy/nginx-deployment"], None)
        .await;
    assert_eq!(
        out.success().lines(),
        ["deployment.apps/nginx-deployment rolled back"],
        "{out}"
    );
    wait_for(
        "revision 1's ReplicaSet to be revision 3",
        WAIT,
        async || {
            let rs = replicasets(&control).await;
            rs.iter()
                .any(|(rev, _, image)| rev == "3" && image == "nginx:1.14.2")
                .then_some(())
                .ok_or(format!("{rs:?}"))
        },
    )
    .await;
    let d = control
        .api()
        .get("/apis/apps/v1/namespaces/default/deployments/nginx-deployment")
        .await
        .expect(200);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.14.2"
    );
}
