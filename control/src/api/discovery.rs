//! API discovery, as kubectl reads it: `/api` (APIVersions), `/apis`
//! (APIGroupList), `/apis/{group}` (APIGroup), `/api/v1` and
//! `/apis/{group}/{version}` (APIResourceList, with the `status` and `scale`
//! subresources), and `/version`. All built from skiff-model's resource
//! table.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_model::ResourceInfo;
use skiff_model::resources::RESOURCES;

use super::json_response;

/// The Kubernetes version whose API skiff follows (kubectl warns about a
/// skew of more than one minor version).
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "32";

/// The verbs of every resource.
pub const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// The verbs of a subresource.
pub const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// Whether objects of `kind` have a `status` subresource.
pub fn has_status(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "Node"
            | "Pod"
            | "ReplicationController"
            | "ReplicaSet"
            | "Deployment"
            | "Service"
    )
}

/// Whether objects of `kind` have a `scale` subresource.
pub fn has_scale(kind: &str) -> bool {
    matches!(kind, "ReplicationController" | "ReplicaSet" | "Deployment")
}

/// `GET /version`.
pub async fn version() -> Response {
    json_response(StatusCode::OK, &version_info())
}

/// The body of `/version`, shaped like Kubernetes'.
pub fn version_info() -> Value {
    let skiff = env!("CARGO_PKG_VERSION");
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+skiff.{skiff}"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    groups
}

fn group_json(group: &str) -> Value {
    let version = RESOURCES
        .iter()
        .find(|r| r.group == group)
        .map_or("v1", |r| r.version);
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_json).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(group: &str) -> Value {
    let mut g = group_json(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

/// The kinds `kubectl get all` shows (the `all` category).
fn in_category_all(kind: &str) -> bool {
    matches!(
        kind,
        "Pod" | "Service" | "ReplicationController" | "ReplicaSet" | "Deployment"
    )
}

fn resource_json(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
        "shortNames": r.short_names,
    });
    if in_category_all(r.kind) {
        v["categories"] = json!(["all"]);
    }
    v
}

/// `/api/v1`, `/apis/{group}/{version}`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(resource_json(r));
        if has_status(r.kind) {
            resources.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": SUBRESOURCE_VERBS}),
            );
        }
        if has_scale(r.kind) {
            resources.push(
                json!({"name": format!("{}/scale", r.plural), "singularName": "",
                "namespaced": r.namespaced, "group": "autoscaling", "version": "v1",
                "kind": "Scale", "verbs": SUBRESOURCE_VERBS}),
            );
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
           "resources": resources})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_documents() {
        let core = resource_list("", "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for n in [
            "pods",
            "pods/status",
            "nodes",
            "services",
            "replicationcontrollers/scale",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(!names.contains(&"deployments"));
        let pods = &core["resources"][names.iter().position(|n| *n == "pods").unwrap()];
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["namespaced"], true);
        let apps = resource_list("apps", "v1");
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert_eq!(group_list()["groups"][0]["name"], "apps");
        assert_eq!(group("apps")["preferredVersion"]["groupVersion"], "apps/v1");
        assert_eq!(version_info()["minor"], "32");
    }
}
