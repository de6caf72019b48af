//! The HTTP layer: turns a request into calls of the pure parts
//! ([`request`](super::request), [`objects`](super::objects),
//! [`patch`](super::patch), [`apply`](super::apply)) and of the
//! [`Registry`], and the outcome into a response. Every error goes back
//! through [`ApiError`]; a refused request writes nothing.

use std::collections::BTreeSet;

use axum::body::to_bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_model::validation::NODE_PORT_RANGE;
use skiff_model::validation::validate_scale;
use skiff_model::{ResourceInfo, Scale, decode_object};
use skiff_runtime::claims;

use super::apply::{self, Outcome};
use super::discovery::{self, has_scale, has_status};
use super::nodeports;
use super::objects::{self, Part, Stamp};
use super::patch::{json_patch, merge_patch, strategic_merge_patch};
use super::registry::{
    LIST_PAGE_SIZE, MAX_UPDATE_ATTEMPTS, Registry, RegistryError, Stored, set_resource_version,
};
use super::request::{
    BodyFormat, Continue, ListOptions, ResourcePath, Route, Subresource, body_format, dry_run,
    parse_path, query_param, wants_table,
};
use super::status::{ApiError, namespaces};
use super::{APPLY_HEADER, ApiServer, MAX_BODY_BYTES, json_response, table, watch};

/// What the handlers need from a request besides its route.
struct Ctx {
    params: Vec<(String, String)>,
    as_table: bool,
    content_type: Option<String>,
    body: Bytes,
}

/// Every request under `/api` and `/apis`.
pub async fn dispatch(State(server): State<ApiServer>, req: Request) -> Response {
    match handle(&server, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(server: &ApiServer, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let route = parse_path(parts.uri.path()).ok_or(ApiError::PathNotFound)?;
    let params = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
        .0;
    let body = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge(MAX_BODY_BYTES))?;
    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ctx = Ctx {
        params,
        as_table: wants_table(header_str(header::ACCEPT).as_deref()),
        content_type: header_str(header::CONTENT_TYPE),
        body,
    };
    let method = parts.method;
    let discovery_doc = |doc: Value| {
        if method == Method::GET {
            Ok(json_response(StatusCode::OK, &doc))
        } else {
            Err(ApiError::MethodNotAllowed)
        }
    };
    match route {
        Route::CoreVersions => discovery_doc(discovery::core_versions()),
        Route::Groups => discovery_doc(discovery::group_list()),
        Route::Group(g) => discovery_doc(discovery::group(&g)),
        Route::Resources { group, version } => {
            discovery_doc(discovery::resource_list(&group, &version))
        }
        Route::Resource(p) => resource(server, &method, p, ctx).await,
    }
}

async fn resource(
    server: &ApiServer,
    method: &Method,
    p: ResourcePath,
    ctx: Ctx,
) -> Result<Response, ApiError> {
    let kind = p.resource.kind;
    match (p.subresource, p.name.clone()) {
        (None, None) => match *method {
            Method::GET => list_or_watch(server, &p, &ctx).await,
            Method::POST => create(server, &p, &ctx).await,
            _ => Err(ApiError::MethodNotAllowed),
        },
        (None, Some(name)) => match *method {
            Method::GET => get(server, &p, &name, &ctx).await,
            Method::PUT => replace(server, &p, &name, &ctx, Part::Main).await,
            Method::PATCH => patch(server, &p, &name, &ctx, Part::Main).await,
            Method::DELETE => delete(server, &p, &name, &ctx).await,
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(Subresource::Status), Some(name)) if has_status(kind) => match *method {
            Method::GET => get(server, &p, &name, &ctx).await,
            Method::PUT => replace(server, &p, &name, &ctx, Part::Status).await,
            Method::PATCH => patch(server, &p, &name, &ctx, Part::Status).await,
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(Subresource::Scale), Some(name)) if has_scale(kind) => {
            scale(server, method, &p, &name, &ctx).await
        }
        (Some(Subresource::Log), Some(name)) if kind == "Pod" => match *method {
            Method::GET => super::logs::pod_log(server, &p, &name, &ctx.params).await,
            _ => Err(ApiError::MethodNotAllowed),
        },
        _ => Err(ApiError::PathNotFound),
    }
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("couldn't decode the request body as JSON: {e}")))
}

fn key_of(resource: &ResourceInfo, namespace: &str, name: &str) -> Result<String, ApiError> {
    resource
        .key(namespace, name)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn object_response(
    code: StatusCode,
    resource: &ResourceInfo,
    value: Value,
    as_table: bool,
) -> Response {
    if as_table {
        let rv = value["metadata"]["resourceVersion"].clone();
        let t = table::table(
            resource,
            &[value],
            json!({"resourceVersion": rv}),
            table::now(),
        );
        json_response(code, &t)
    } else {
        json_response(code, &value)
    }
}

/// 404 for a namespace that does not exist.
async fn ensure_namespace(server: &ApiServer, namespace: &str) -> Result<(), ApiError> {
    let key = key_of(namespaces(), "", namespace)?;
    match server.registry().get(&key).await {
        Ok(ns) if objects::is_terminating(&ns.value) => Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        ))),
        Ok(_) => Ok(()),
        Err(RegistryError::NotFound) => Err(ApiError::NamespaceNotFound(namespace.to_string())),
        Err(e) => Err(ApiError::from_registry(e, namespaces(), namespace)),
    }
}

/// Reads the objects under `prefix` that `opts` selects, in pages of at
/// most [`LIST_PAGE_SIZE`] keys (fewer when a limit needs fewer) at one
/// revision: at most `opts.limit` of them, with a continue token when more
/// remain.
pub async fn read_list(
    registry: &Registry,
    resource: &'static ResourceInfo,
    prefix: &str,
    opts: &ListOptions,
) -> Result<(Vec<Value>, i64, Option<Continue>), ApiError> {
    let exact = opts.exact || opts.limit.is_some();
    let (mut start, mut revision) = match &opts.continue_from {
        Some(c) if !c.last_key.starts_with(prefix) => {
            return Err(ApiError::BadRequest(
                "the continue token is not for this list".to_string(),
            ));
        }
        Some(c) => (Some(c.last_key.clone()), Some(c.revision)),
        None => (None, opts.resource_version.filter(|_| exact)),
    };
    let mut items = Vec::new();
    let mut next = None;
    'pages: loop {
        let page_size = match opts.limit {
            Some(limit) => (limit - items.len() as i64).clamp(1, LIST_PAGE_SIZE),
            None => LIST_PAGE_SIZE,
        };
        let page = registry
            .list_page(prefix, start.as_deref(), revision, page_size)
            .await
            .map_err(|e| match e {
                RegistryError::Compacted { .. } if opts.continue_from.is_some() => ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".to_string(),
                ),
                RegistryError::Compacted { .. } => ApiError::Expired(format!(
                    "too old resource version: {}",
                    revision.unwrap_or(0)
                )),
                other => ApiError::from_registry(other, resource, ""),
            })?;
        revision = Some(page.revision);
        let count = page.items.len();
        for (i, item) in page.items.into_iter().enumerate() {
            let Stored { key, value, .. } = item;
            if opts.matches(&value) {
                items.push(value);
            }
            if opts.limit.is_some_and(|l| items.len() as i64 >= l) {
                if i + 1 < count || page.more {
                    next = Some(Continue {
                        revision: page.revision,
                        last_key: key,
                    });
                }
                break 'pages;
            }
            start = Some(key);
        }
        if !page.more {
            break;
        }
    }
    let revision = revision.unwrap_or(0);
    if let Some(rv) = opts.resource_version
        && !exact
        && opts.continue_from.is_none()
        && revision < rv
    {
        return Err(ApiError::TooLargeResourceVersion {
            requested: rv,
            current: revision,
        });
    }
    Ok((items, revision, next))
}

/// Every object under `prefix` that `opts` selects, and the revision read
/// at (for a watch's synthetic events).
pub async fn read_all(
    registry: &Registry,
    resource: &'static ResourceInfo,
    prefix: &str,
    opts: &ListOptions,
) -> Result<(Vec<Value>, i64), ApiError> {
    let all = ListOptions {
        limit: None,
        continue_from: None,
        resource_version: None,
        ..opts.clone()
    };
    let (items, revision, _) = read_list(registry, resource, prefix, &all).await?;
    Ok((items, revision))
}

async fn list_or_watch(
    server: &ApiServer,
    p: &ResourcePath,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let resource = p.resource;
    let opts = ListOptions::parse(&ctx.params, resource)?;
    let prefix = resource.prefix(p.namespace.as_deref());
    if opts.watch {
        return watch::watch(server, resource, prefix, opts, ctx.as_table).await;
    }
    let (items, revision, next) = read_list(server.registry(), resource, &prefix, &opts).await?;
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = next {
        metadata["continue"] = json!(c.encode());
    }
    if ctx.as_table {
        let t = table::table(resource, &items, metadata, table::now());
        return Ok(json_response(StatusCode::OK, &t));
    }
    let list = json!({
        "kind": resource.list_kind,
        "apiVersion": resource.api_version,
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

async fn get(
    server: &ApiServer,
    p: &ResourcePath,
    name: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let key = key_of(p.resource, p.object_namespace(), name)?;
    let stored = server
        .registry()
        .get(&key)
        .await
        .map_err(|e| ApiError::from_registry(e, p.resource, name))?;
    Ok(object_response(
        StatusCode::OK,
        p.resource,
        stored.value,
        ctx.as_table,
    ))
}

async fn create(server: &ApiServer, p: &ResourcePath, ctx: &Ctx) -> Result<Response, ApiError> {
    let resource = p.resource;
    if body_format(ctx.content_type.as_deref()) != Some(BodyFormat::Json) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = json_body(&ctx.body)?;
    let namespace = p.object_namespace();
    let dry = dry_run(&ctx.params)?;
    let prepared = objects::prepare_create(resource, namespace, &body, &Stamp::now())?;
    if resource.namespaced {
        ensure_namespace(server, namespace).await?;
    }
    let name = objects::name_of(&prepared).to_string();
    let key = key_of(resource, namespace, &name)?;
    let registry = server.registry();
    for attempt in 1..=MAX_UPDATE_ATTEMPTS {
        let mut object = prepared.clone();
        let chosen = allocate_node_ports(registry, resource, None, &mut object).await?;
        if dry {
            return Ok(object_response(
                StatusCode::CREATED,
                resource,
                object,
                ctx.as_table,
            ));
        }
        match registry.create(&key, &object).await {
            Ok(stored) => {
                tracing::info!(key = %key, revision = stored.mod_revision, "created");
                return Ok(object_response(
                    StatusCode::CREATED,
                    resource,
                    stored.value,
                    ctx.as_table,
                ));
            }
            Err(RegistryError::Claimed { key: claim }) => {
                claim_refused(resource, &name, &object, &claim, &chosen, attempt)?;
            }
            Err(e) => return Err(ApiError::from_registry(e, resource, &name)),
        }
    }
    Err(nodeports::range_full())
}

/// Gives each port of a Service without a node port one: the one it had
/// in `old` (an update), else a free one. Returns the node ports chosen
/// here, as opposed to those the request asked for. Other kinds: nothing.
async fn allocate_node_ports(
    registry: &Registry,
    resource: &'static ResourceInfo,
    old: Option<&Value>,
    object: &mut Value,
) -> Result<BTreeSet<i32>, ApiError> {
    if !nodeports::is_service(resource) {
        return Ok(BTreeSet::new());
    }
    if let Some(old) = old {
        nodeports::keep_allocated(old, object);
    }
    let missing = nodeports::unallocated(object);
    if missing.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut taken: BTreeSet<i32> = registry
        .keys(claims::NODE_PORT_CLAIMS_PREFIX, 0)
        .await
        .map_err(|e| ApiError::from_registry(e, resource, objects::name_of(object)))?
        .iter()
        .filter_map(|k| claims::claimed_node_port(k))
        .collect();
    taken.extend(nodeports::requested(object));
    let start = rand::random_range(NODE_PORT_RANGE);
    let ports =
        nodeports::choose(&taken, missing.len(), start).ok_or_else(nodeports::range_full)?;
    nodeports::assign(object, &missing, &ports);
    Ok(ports.into_iter().collect())
}

/// A write refused because another Service holds node port claim
/// `claim`: `Ok` to choose again (this request chose the port, and
/// attempts are left), else the 422 naming the field that asked for it.
fn claim_refused(
    resource: &'static ResourceInfo,
    name: &str,
    object: &Value,
    claim: &str,
    chosen: &BTreeSet<i32>,
    attempt: u32,
) -> Result<(), ApiError> {
    let Some(port) = claims::claimed_node_port(claim) else {
        return Err(ApiError::Internal(format!("{claim} is already claimed")));
    };
    if chosen.contains(&port) {
        if attempt < MAX_UPDATE_ATTEMPTS {
            tracing::debug!(port, attempt, "node port taken meanwhile, choosing again");
            return Ok(());
        }
        return Err(nodeports::range_full());
    }
    Err(nodeports::already_allocated(resource, name, object, port))
}

/// Reads the object, computes its next state with `change` and writes it
/// with a compare-and-swap; on a lost race, again (at most
/// [`MAX_UPDATE_ATTEMPTS`] times) unless the request named the
/// resourceVersion it was based on (`precondition`): then the race is a
/// 409. A change that changes nothing writes nothing. An object being
/// deleted whose last finalizer goes is deleted.
async fn update_loop(
    server: &ApiServer,
    resource: &'static ResourceInfo,
    name: &str,
    key: &str,
    precondition: Option<i64>,
    dry: bool,
    mut change: impl FnMut(&Stored) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let registry = server.registry();
    let err = |e| ApiError::from_registry(e, resource, name);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = registry.get(key).await.map_err(err)?;
        if precondition.is_some_and(|rv| rv != current.mod_revision) {
            return Err(err(RegistryError::Conflict));
        }
        let mut next = change(&current)?;
        let chosen =
            allocate_node_ports(registry, resource, Some(&current.value), &mut next).await?;
        if objects::unchanged(&current.value, &next) {
            return Ok(current.value);
        }
        if dry {
            set_resource_version(&mut next, current.mod_revision);
            return Ok(next);
        }
        let result = if objects::ready_to_delete(&next) {
            registry
                .delete(key, current.mod_revision)
                .await
                .map(|_| next.clone())
        } else {
            registry
                .update(key, &next, current.mod_revision)
                .await
                .map(|s| s.value)
        };
        match result {
            Ok(value) => {
                tracing::info!(key = %key, "updated");
                return Ok(value);
            }
            Err(RegistryError::Conflict)
                if precondition.is_none() && attempt < MAX_UPDATE_ATTEMPTS =>
            {
                continue;
            }
            Err(RegistryError::Claimed { key: claim }) => {
                claim_refused(resource, name, &next, &claim, &chosen, attempt)?;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

async fn replace(
    server: &ApiServer,
    p: &ResourcePath,
    name: &str,
    ctx: &Ctx,
    part: Part,
) -> Result<Response, ApiError> {
    let resource = p.resource;
    if body_format(ctx.content_type.as_deref()) != Some(BodyFormat::Json) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut body = json_body(&ctx.body)?;
    let namespace = p.object_namespace();
    objects::fill_identity(resource, &mut body, namespace, name)?;
    let new = objects::decode_body(resource, &body)?;
    let precondition = objects::body_resource_version(&body)?;
    let dry = dry_run(&ctx.params)?;
    let key = key_of(resource, namespace, name)?;
    let value = update_loop(server, resource, name, &key, precondition, dry, |current| {
        objects::prepare_update(resource, &current.value, &new, part)
    })
    .await?;
    Ok(object_response(
        StatusCode::OK,
        resource,
        value,
        ctx.as_table,
    ))
}

/// The patched object: merge or strategic merge.
fn patched(
    resource: &ResourceInfo,
    format: BodyFormat,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match format {
        BodyFormat::MergePatch => Ok(merge_patch(current, patch)),
        BodyFormat::JsonPatch => json_patch(current, patch)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}"))),
        BodyFormat::StrategicMergePatch => strategic_merge_patch(resource.kind, current, patch)
            .map_err(|e| ApiError::BadRequest(format!("invalid strategic merge patch: {e}"))),
        BodyFormat::Json | BodyFormat::Apply => Err(ApiError::UnsupportedMediaType),
    }
}

async fn patch(
    server: &ApiServer,
    p: &ResourcePath,
    name: &str,
    ctx: &Ctx,
    part: Part,
) -> Result<Response, ApiError> {
    let resource = p.resource;
    let format = body_format(ctx.content_type.as_deref()).ok_or(ApiError::UnsupportedMediaType)?;
    if format == BodyFormat::Apply && part == Part::Main {
        return server_side_apply(server, p, name, ctx).await;
    }
    let patch = json_body(&ctx.body)?;
    let shape_ok = match format {
        BodyFormat::JsonPatch => patch.is_array(),
        _ => patch.is_object(),
    };
    if !shape_ok {
        return Err(ApiError::BadRequest(
            "a JSON patch is a list of operations; other patches are JSON objects".to_string(),
        ));
    }
    let precondition = objects::body_resource_version(&patch)?;
    let dry = dry_run(&ctx.params)?;
    let key = key_of(resource, p.object_namespace(), name)?;
    let value = update_loop(server, resource, name, &key, precondition, dry, |current| {
        let next = patched(resource, format, &current.value, &patch)?;
        objects::check_name(&next, name)?;
        let obj = objects::decode_body(resource, &next)?;
        objects::prepare_update(resource, &current.value, &obj, part)
    })
    .await?;
    Ok(object_response(
        StatusCode::OK,
        resource,
        value,
        ctx.as_table,
    ))
}

fn apply_response(code: StatusCode, outcome: Outcome, value: Value) -> Response {
    let mut response = json_response(code, &value);
    response
        .headers_mut()
        .insert(APPLY_HEADER, HeaderValue::from_static(outcome.as_str()));
    response
}

async fn server_side_apply(
    server: &ApiServer,
    p: &ResourcePath,
    name: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let resource = p.resource;
    let registry = server.registry();
    let err = |e| ApiError::from_registry(e, resource, name);
    let manifest = apply::parse_manifest(&ctx.body)?;
    let namespace = p.object_namespace();
    apply::check_manifest(resource, &manifest, namespace, name)?;
    let precondition = objects::body_resource_version(&manifest)?;
    let dry = dry_run(&ctx.params)?;
    let key = key_of(resource, namespace, name)?;
    if query_param(&ctx.params, "fieldManager") == Some(apply::LAST_APPLIED_MANAGER) {
        let current = registry.get(&key).await.map_err(err)?;
        return Ok(apply_response(
            StatusCode::OK,
            Outcome::Unchanged,
            current.value,
        ));
    }
    for attempt in 1..=MAX_UPDATE_ATTEMPTS {
        let last = attempt == MAX_UPDATE_ATTEMPTS;
        match registry.get(&key).await {
            Err(RegistryError::NotFound) => {
                let mut object = apply::plan_create(resource, namespace, &manifest, &Stamp::now())?;
                let chosen = allocate_node_ports(registry, resource, None, &mut object).await?;
                if resource.namespaced {
                    ensure_namespace(server, namespace).await?;
                }
                if dry {
                    return Ok(apply_response(
                        StatusCode::CREATED,
                        Outcome::Created,
                        object,
                    ));
                }
                match registry.create(&key, &object).await {
                    Ok(stored) => {
                        tracing::info!(key = %key, revision = stored.mod_revision, "applied: created");
                        return Ok(apply_response(
                            StatusCode::CREATED,
                            Outcome::Created,
                            stored.value,
                        ));
                    }
                    Err(RegistryError::AlreadyExists) if !last => continue,
                    Err(RegistryError::Claimed { key: claim }) => {
                        claim_refused(resource, name, &object, &claim, &chosen, attempt)?;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
            Ok(current) => {
                if precondition.is_some_and(|rv| rv != current.mod_revision) {
                    return Err(err(RegistryError::Conflict));
                }
                let Some(mut next) = apply::plan_update(resource, &current.value, &manifest)?
                else {
                    return Ok(apply_response(
                        StatusCode::OK,
                        Outcome::Unchanged,
                        current.value,
                    ));
                };
                let chosen =
                    allocate_node_ports(registry, resource, Some(&current.value), &mut next)
                        .await?;
                if dry {
                    set_resource_version(&mut next, current.mod_revision);
                    return Ok(apply_response(StatusCode::OK, Outcome::Configured, next));
                }
                match registry.update(&key, &next, current.mod_revision).await {
                    Ok(stored) => {
                        tracing::info!(key = %key, revision = stored.mod_revision, "applied: configured");
                        return Ok(apply_response(
                            StatusCode::OK,
                            Outcome::Configured,
                            stored.value,
                        ));
                    }
                    Err(RegistryError::Conflict) if precondition.is_none() && !last => continue,
                    Err(RegistryError::Claimed { key: claim }) => {
                        claim_refused(resource, name, &next, &claim, &chosen, attempt)?;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
        }
    }
    Err(err(RegistryError::Conflict))
}

/// Rounds of deleting a terminating namespace's content before giving up
/// on a namespace that keeps getting new objects.
const EMPTY_NAMESPACE_ROUNDS: u32 = 5;

/// Deletes every object in namespace `ns`, until a check finds none left
/// (a create that passed its namespace check before the namespace was
/// marked terminating may land meanwhile).
async fn empty_namespace(registry: &Registry, ns: &str) -> Result<(), ApiError> {
    let namespaced: Vec<&'static ResourceInfo> = skiff_model::RESOURCES
        .iter()
        .filter(|r| r.namespaced)
        .collect();
    for _ in 0..EMPTY_NAMESPACE_ROUNDS {
        let mut left = 0;
        for r in &namespaced {
            let prefix = r.prefix(Some(ns));
            let deleted = registry
                .delete_prefix(&prefix)
                .await
                .map_err(|e| ApiError::from_registry(e, r, ""))?;
            if deleted > 0 {
                tracing::info!(
                    namespace = ns,
                    resource = r.plural,
                    deleted,
                    "deleted namespace content"
                );
            }
        }
        for r in &namespaced {
            left += registry
                .count(&r.prefix(Some(ns)))
                .await
                .map_err(|e| ApiError::from_registry(e, r, ""))?;
        }
        if left == 0 {
            return Ok(());
        }
    }
    Err(ApiError::Internal(format!(
        "namespace {ns} still has content after {EMPTY_NAMESPACE_ROUNDS} rounds of deletion"
    )))
}

/// `DeleteOptions` as far as skiff reads them.
struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<i64>,
    dry: bool,
    /// `gracePeriodSeconds`, for a pod: how long its containers get to stop.
    grace_period: Option<i64>,
    /// `propagationPolicy`: `Orphan`, `Background` (the default) or
    /// `Foreground`.
    policy: Option<String>,
}

fn delete_options(ctx: &Ctx) -> Result<DeleteOptions, ApiError> {
    let body = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        json_body(&ctx.body)?
    };
    let policy = query_param(&ctx.params, "propagationPolicy")
        .or_else(|| body.get("propagationPolicy").and_then(Value::as_str));
    if let Some(policy) = policy
        && !matches!(policy, "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::BadRequest(format!(
            "propagationPolicy {policy:?} is not one of Orphan, Background, Foreground"
        )));
    }
    let pre = body.get("preconditions");
    let uid = pre
        .and_then(|p| p.get("uid"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let resource_version = super::request::parse_resource_version(
        pre.and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str),
    )?;
    let body_dry = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    let grace_period = match query_param(&ctx.params, "gracePeriodSeconds") {
        Some(g) => Some(g.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "gracePeriodSeconds {g:?} is not a number of seconds"
            ))
        })?),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    if let Some(g) = grace_period
        && g < 0
    {
        return Err(ApiError::BadRequest(format!(
            "gracePeriodSeconds {g} is negative"
        )));
    }
    let policy = policy.map(str::to_string);
    Ok(DeleteOptions {
        uid,
        resource_version,
        dry: dry_run(&ctx.params)? || body_dry,
        grace_period,
        policy,
    })
}

async fn delete(
    server: &ApiServer,
    p: &ResourcePath,
    name: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let resource = p.resource;
    let registry = server.registry();
    let err = |e| ApiError::from_registry(e, resource, name);
    let opts = delete_options(ctx)?;
    if resource.kind == "Namespace" && name == super::DEFAULT_NAMESPACE {
        return Err(ApiError::Forbidden(format!(
            "namespaces {name:?} is forbidden: this namespace may not be deleted"
        )));
    }
    let key = key_of(resource, p.object_namespace(), name)?;
    for attempt in 1..=MAX_UPDATE_ATTEMPTS {
        let last = attempt == MAX_UPDATE_ATTEMPTS;
        let current = registry.get(&key).await.map_err(err)?;
        let meta = &current.value["metadata"];
        if let Some(uid) = &opts.uid
            && meta["uid"].as_str() != Some(uid.as_str())
        {
            return Err(ApiError::PreconditionFailed {
                resource,
                name: name.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta["uid"].as_str().unwrap_or("")
                ),
            });
        }
        if let Some(rv) = opts.resource_version
            && rv != current.mod_revision
        {
            return Err(ApiError::PreconditionFailed {
                resource,
                name: name.to_string(),
                message: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in meta: {}",
                    current.mod_revision
                ),
            });
        }
        let mut current = current;
        if resource.kind == "Namespace" && !opts.dry {
            // Refuse new content first, then delete what is there.
            if let Some(terminating) = objects::mark_terminating(&current.value) {
                current = match registry
                    .update(&key, &terminating, current.mod_revision)
                    .await
                {
                    Ok(stored) => stored,
                    Err(RegistryError::Conflict) if !last => continue,
                    Err(e) => return Err(err(e)),
                };
            }
            empty_namespace(registry, name).await?;
        }
        if !opts.dry && opts.policy.as_deref() == Some("Orphan") && resource.kind != "Pod" {
            // Marked first, so that its controller adopts nothing while its
            // dependents are let go.
            if current.value["metadata"]["deletionTimestamp"].is_null() {
                let mut marked = current.value.clone();
                marked["metadata"]["deletionTimestamp"] = Value::String(Stamp::now().now);
                match registry.update(&key, &marked, current.mod_revision).await {
                    Ok(stored) => current = stored,
                    Err(RegistryError::Conflict) if !last => continue,
                    Err(e) => return Err(err(e)),
                }
            }
            let uid = current.value["metadata"]["uid"]
                .as_str()
                .unwrap_or("")
                .to_string();
            orphan_dependents(registry, p.object_namespace(), &uid).await?;
        }
        if !opts.dry
            && opts.policy.as_deref() == Some("Foreground")
            && resource.kind != "Pod"
            && let Some(marked) = objects::mark_foreground(&current.value, &Stamp::now().now)
        {
            // The garbage collector deletes the dependents, then the object.
            match registry.update(&key, &marked, current.mod_revision).await {
                Ok(stored) => {
                    tracing::info!(key = %key, "foreground deletion: dependents first");
                    return Ok(object_response(
                        StatusCode::OK,
                        resource,
                        stored.value,
                        false,
                    ));
                }
                Err(RegistryError::Conflict) if !last => continue,
                Err(e) => return Err(err(e)),
            }
        }
        if resource.kind == "Pod"
            && let Some(marked) = objects::mark_terminating_pod(
                &current.value,
                opts.grace_period,
                skiff_model::Time::now(),
            )
        {
            // A pod on a node stops gracefully: its agent stops the
            // containers, then deletes the object.
            if opts.dry {
                return Ok(object_response(StatusCode::OK, resource, marked, false));
            }
            match registry.update(&key, &marked, current.mod_revision).await {
                Ok(stored) => {
                    tracing::info!(key = %key, grace = ?stored.value["metadata"]["deletionGracePeriodSeconds"], "pod terminating");
                    return Ok(object_response(
                        StatusCode::OK,
                        resource,
                        stored.value,
                        false,
                    ));
                }
                Err(RegistryError::Conflict) if !last => continue,
                Err(e) => return Err(err(e)),
            }
        }
        if resource.kind == "Pod"
            && objects::is_terminating_pod(&current.value)
            && opts.grace_period != Some(0)
        {
            // Already stopping, and not forced: nothing more to do now.
            return Ok(object_response(
                StatusCode::OK,
                resource,
                current.value,
                false,
            ));
        }
        let meta = &current.value["metadata"];
        let has_finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let Some(marked) = objects::mark_deleted(&current.value, &Stamp::now().now) else {
                return Ok(object_response(
                    StatusCode::OK,
                    resource,
                    current.value,
                    false,
                ));
            };
            if opts.dry {
                return Ok(object_response(StatusCode::OK, resource, marked, false));
            }
            match registry.update(&key, &marked, current.mod_revision).await {
                Ok(stored) => {
                    tracing::info!(key = %key, "marked for deletion; finalizers pending");
                    return Ok(object_response(
                        StatusCode::OK,
                        resource,
                        stored.value,
                        false,
                    ));
                }
                Err(RegistryError::Conflict) if !last => continue,
                Err(e) => return Err(err(e)),
            }
        }
        if opts.dry {
            return Ok(object_response(
                StatusCode::OK,
                resource,
                current.value,
                false,
            ));
        }
        match registry.delete(&key, current.mod_revision).await {
            Ok(prev) => {
                tracing::info!(key = %key, "deleted");
                return Ok(object_response(StatusCode::OK, resource, prev.value, false));
            }
            Err(RegistryError::Conflict) if !last => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(err(RegistryError::Conflict))
}

/// Removes the owner reference to `uid` from every pod and ReplicaSet of
/// `namespace` (an orphaning delete: the dependents stay).
async fn orphan_dependents(
    registry: &Registry,
    namespace: &str,
    uid: &str,
) -> Result<(), ApiError> {
    for plural in ["pods", "replicasets"] {
        let r = skiff_model::resources::lookup(plural).expect("a known resource");
        let prefix = r.prefix(Some(namespace));
        let mut after: Option<String> = None;
        loop {
            let page = registry
                .list_page(
                    &prefix,
                    after.as_deref(),
                    None,
                    super::registry::LIST_PAGE_SIZE,
                )
                .await
                .map_err(|e| ApiError::from_registry(e, r, ""))?;
            after = page.items.last().map(|s| s.key.clone());
            for item in &page.items {
                if !objects::owned_by(&item.value, uid) {
                    continue;
                }
                let result = registry
                    .update_with::<RegistryError>(&item.key, |current| {
                        Ok(objects::without_owner(&current.value, uid))
                    })
                    .await;
                match result {
                    Ok(_) | Err(RegistryError::NotFound) => {}
                    Err(e) => {
                        return Err(ApiError::from_registry(e, r, objects::name_of(&item.value)));
                    }
                }
            }
            if !page.more {
                break;
            }
        }
    }
    Ok(())
}

fn scale_invalid(name: &str, causes: Vec<skiff_model::StatusCause>) -> ApiError {
    ApiError::Invalid {
        kind: "Scale",
        group: "autoscaling",
        name: name.to_string(),
        causes,
    }
}

fn decode_scale(value: &Value, name: &str) -> Result<Scale, ApiError> {
    let scale: Scale = skiff_model::decode(value).map_err(|e| {
        ApiError::BadRequest(format!(
            "Scale in version \"v1\" cannot be handled as a Scale: {e}"
        ))
    })?;
    let causes = validate_scale(&scale);
    if !causes.is_empty() {
        return Err(scale_invalid(name, causes));
    }
    Ok(scale)
}

fn scale_of(value: &Value) -> Result<Value, ApiError> {
    let obj = decode_object(value)
        .map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
    let scale = obj
        .scale()
        .ok_or_else(|| ApiError::Internal(format!("{} has no scale", obj.kind())))?;
    Ok(serde_json::to_value(scale).expect("Scale serializes"))
}

/// Sets the replicas of a stored object and prepares the update.
fn rescale(
    resource: &'static ResourceInfo,
    current: &Value,
    replicas: i32,
) -> Result<Value, ApiError> {
    let mut obj = decode_object(current)
        .map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
    obj.set_replicas(replicas);
    objects::prepare_update(resource, current, &obj, Part::Main)
}

async fn scale(
    server: &ApiServer,
    method: &Method,
    p: &ResourcePath,
    name: &str,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let resource = p.resource;
    let key = key_of(resource, p.object_namespace(), name)?;
    let value = match *method {
        Method::GET => {
            server
                .registry()
                .get(&key)
                .await
                .map_err(|e| ApiError::from_registry(e, resource, name))?
                .value
        }
        Method::PUT => {
            if body_format(ctx.content_type.as_deref()) != Some(BodyFormat::Json) {
                return Err(ApiError::UnsupportedMediaType);
            }
            let body = json_body(&ctx.body)?;
            objects::check_name(&body, name)?;
            let scale = decode_scale(&body, name)?;
            let precondition =
                super::request::parse_resource_version(Some(&scale.metadata.resource_version))?;
            let dry = dry_run(&ctx.params)?;
            update_loop(server, resource, name, &key, precondition, dry, |current| {
                rescale(resource, &current.value, scale.spec.replicas)
            })
            .await?
        }
        Method::PATCH => {
            let format =
                body_format(ctx.content_type.as_deref()).ok_or(ApiError::UnsupportedMediaType)?;
            let patch = json_body(&ctx.body)?;
            let dry = dry_run(&ctx.params)?;
            update_loop(server, resource, name, &key, None, dry, |current| {
                let scale = patched(resource, format, &scale_of(&current.value)?, &patch)?;
                let scale = decode_scale(&scale, name)?;
                rescale(resource, &current.value, scale.spec.replicas)
            })
            .await?
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(json_response(StatusCode::OK, &scale_of(&value)?))
}
