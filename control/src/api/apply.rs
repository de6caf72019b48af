//! Server-side apply (`PATCH` with `application/apply-patch+yaml`), decided
//! without IO: read the manifest (YAML or JSON), check it names the object
//! of the path, and merge it into the live object with skiff-model's apply
//! (the previous manifest kept in kubectl's last-applied annotation).
//!
//! The outcome is one of [`Outcome`], sent to the client in the
//! `X-Skiff-Apply` header. Applying the same manifest again writes nothing:
//! the object and its resourceVersion stay as they are.

use serde_json::Value;
use skiff_model::ResourceInfo;

use super::objects::{self, Part, Stamp};
use super::status::ApiError;

/// The field manager under which kubectl, after a server-side apply,
/// applies the last-applied annotation alone to take ownership of it.
/// skiff keeps one applied manifest per object, in that annotation, so an
/// apply by this manager changes nothing.
pub const LAST_APPLIED_MANAGER: &str = "kubectl-last-applied";

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    /// The value of the `X-Skiff-Apply` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Reads a manifest: JSON, or else YAML (one document).
pub fn parse_manifest(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the manifest is not UTF-8".to_string()))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))
}

/// Checks that the manifest is an object of `resource` named `name` in
/// `namespace` (`""` for a cluster-scoped kind). Unlike other writes, an
/// apply must say its apiVersion and kind.
pub fn check_manifest(
    resource: &ResourceInfo,
    manifest: &Value,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !manifest.is_object() {
        return Err(ApiError::BadRequest(
            "the manifest is not an object".to_string(),
        ));
    }
    let field = |f: &str| manifest.get(f).and_then(Value::as_str).unwrap_or("");
    if field("apiVersion") != resource.api_version || field("kind") != resource.kind {
        return Err(ApiError::BadRequest(format!(
            "the manifest is a {} {:?}, not a {} {:?}",
            field("apiVersion"),
            field("kind"),
            resource.api_version,
            resource.kind
        )));
    }
    let meta = |f: &str| {
        manifest
            .get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    if meta("name") != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta("name")
        )));
    }
    if resource.namespaced && !meta("namespace").is_empty() && meta("namespace") != namespace {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_string(),
        ));
    }
    Ok(())
}

/// The object to create when nothing is live.
pub fn plan_create(
    resource: &'static ResourceInfo,
    namespace: &str,
    manifest: &Value,
    stamp: &Stamp,
) -> Result<Value, ApiError> {
    let applied = skiff_model::apply_with_annotation(None, manifest);
    objects::prepare_create(resource, namespace, &applied.object, stamp)
}

/// The object after applying `manifest` to `live` (as stored), or `None`
/// when nothing would change.
pub fn plan_update(
    resource: &'static ResourceInfo,
    live: &Value,
    manifest: &Value,
) -> Result<Option<Value>, ApiError> {
    let applied = skiff_model::apply_with_annotation(Some(live), manifest);
    if !applied.changed {
        return Ok(None);
    }
    let obj = objects::decode_body(resource, &applied.object)?;
    let next = objects::prepare_update(resource, live, &obj, Part::Main)?;
    Ok((!objects::unchanged(live, &next)).then_some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_model::resources;

    const DEPLOYMENT: &str = r#"
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
"#;

    fn stamp() -> Stamp {
        Stamp {
            uid: "u".into(),
            now: "2026-12-01T10:00:00Z".into(),
            suffix: "abcde".into(),
        }
    }

    #[test]
    fn apply_twice_changes_nothing_and_keeps_what_others_set() {
        let deploy = resources::lookup("deployments").unwrap();
        let manifest = parse_manifest(DEPLOYMENT.as_bytes()).unwrap();
        check_manifest(deploy, &manifest, "default", "nginx-deployment").unwrap();
        let mut live = plan_create(deploy, "default", &manifest, &stamp()).unwrap();
        live["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(live["spec"]["replicas"], 3);
        assert_eq!(plan_update(deploy, &live, &manifest).unwrap(), None);
        // A scale and a status written by others survive an apply of a
        // manifest that leaves replicas out.
        let mut no_replicas = manifest.clone();
        no_replicas["spec"]
            .as_object_mut()
            .unwrap()
            .remove("replicas");
        let mut scaled = plan_create(deploy, "default", &no_replicas, &stamp()).unwrap();
        scaled["spec"]["replicas"] = json!(5);
        scaled["status"] = json!({"replicas": 5});
        assert_eq!(plan_update(deploy, &scaled, &no_replicas).unwrap(), None);
        let mut image = no_replicas.clone();
        image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
        let next = plan_update(deploy, &scaled, &image).unwrap().unwrap();
        assert_eq!(next["spec"]["replicas"], 5);
        assert_eq!(next["status"]["replicas"], 5);
        assert_eq!(next["metadata"]["generation"], 2);
        // A label the manifest no longer sets goes away.
        let mut fewer = manifest.clone();
        fewer["metadata"].as_object_mut().unwrap().remove("labels");
        let next = plan_update(deploy, &live, &fewer).unwrap().unwrap();
        assert!(next["metadata"].get("labels").is_none());
        assert_eq!(next["metadata"]["generation"], 1);
    }

    #[test]
    fn manifests_must_name_the_object() {
        let pods = resources::lookup("pods").unwrap();
        let m = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}});
        assert!(check_manifest(pods, &m, "default", "b").is_err());
        assert!(check_manifest(pods, &m, "default", "a").is_ok());
        let ns =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x"}});
        assert!(check_manifest(pods, &ns, "default", "a").is_err());
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}});
        assert!(check_manifest(pods, &svc, "default", "a").is_err());
        assert!(parse_manifest(b"{not yaml: [").is_err());
        assert_eq!(
            parse_manifest(b"a: 1\nb: [x]\n").unwrap(),
            json!({"a": 1, "b": ["x"]})
        );
    }
}
