//! A minimal OpenAPI v3 description of the API: enough for `kubectl apply`
//! (without `--validate=false`).
//!
//! kubectl reads `/openapi/v3` (the list of group-versions) and then one
//! document per group-version, looking for the `PATCH` operation of each
//! kind (tagged with `x-kubernetes-group-version-kind`) and its
//! `fieldValidation` parameter: when the server takes that parameter,
//! kubectl leaves field validation to the server, which refuses unknown
//! fields by name. The documents carry no schemas; kubectl then computes
//! strategic merge patches from its own built-in types.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use skiff_model::ResourceInfo;
use skiff_model::resources::RESOURCES;

use super::json_response;
use super::status::ApiError;

/// Changes whenever the documents do, so clients can cache by it.
const DOC_HASH: &str = concat!("skiff-", env!("CARGO_PKG_VERSION"));

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub async fn paths() -> Response {
    json_response(StatusCode::OK, &paths_doc())
}

/// The list of group-version documents.
pub fn paths_doc() -> Value {
    let mut paths = Map::new();
    for r in RESOURCES {
        let p = gv_path(r.group, r.version);
        paths.entry(p.clone()).or_insert_with(
            || json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={DOC_HASH}")}),
        );
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/{api/v1 | apis/apps/v1}`.
pub async fn group_version(Path(gv): Path<String>) -> Response {
    match group_version_doc(&gv) {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => ApiError::PathNotFound.into_response(),
    }
}

fn query(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn gvk(r: &ResourceInfo) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn operation(r: &ResourceInfo, id: &str, params: &[&str]) -> Value {
    let parameters: Vec<Value> = params.iter().map(|p| query(p)).collect();
    json!({
        "operationId": format!("{id}{}", r.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": id,
        "x-kubernetes-group-version-kind": gvk(r),
    })
}

/// The document of one group-version (`api/v1`, `apis/apps/v1`).
pub fn group_version_doc(gv: &str) -> Option<Value> {
    let gv = gv.trim_matches('/');
    let resources: Vec<&ResourceInfo> = RESOURCES
        .iter()
        .filter(|r| gv_path(r.group, r.version) == gv)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let write_params = ["dryRun", "fieldManager", "fieldValidation"];
    let mut paths = Map::new();
    for r in resources {
        let ns = r.namespaced.then_some("{namespace}");
        let collection = r.collection_path(ns);
        let object = format!("{collection}/{{name}}");
        paths.insert(
            collection,
            json!({
                "get": operation(r, "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "watch"]),
                "post": operation(r, "create", &write_params),
            }),
        );
        paths.insert(
            object,
            json!({
                "get": operation(r, "read", &[]),
                "put": operation(r, "replace", &write_params),
                "patch": operation(r, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
                "delete": operation(r, "delete", &["dryRun", "propagationPolicy"]),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "skiff", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_patch_with_field_validation() {
        let p = paths_doc();
        assert!(
            p["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/api/v1?hash=")
        );
        assert!(p["paths"].get("apis/apps/v1").is_some());
        let core = group_version_doc("api/v1").unwrap();
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert!(core["paths"].get("/api/v1/nodes/{name}").is_some());
        let apps = group_version_doc("apis/apps/v1").unwrap();
        assert!(
            apps["paths"]
                .get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
                .is_some()
        );
        assert!(group_version_doc("apis/batch/v1").is_none());
    }
}
