//! What a request asks for, decided without IO: the route of a path, the
//! list and watch options of a query, the format of a body, whether the
//! client wants a Table, and the continue tokens of paged lists.

use skiff_model::fields::FieldSelectorError;
use skiff_model::{FieldSelector, ResourceInfo, Selector, resources};

use super::status::ApiError;

/// The largest `limit` a list may ask for; larger ones are cut to it.
pub const MAX_LIST_LIMIT: i64 = 5_000;
/// The longest a watch stays open (`timeoutSeconds` is capped to it, and
/// it is the default).
pub const MAX_WATCH_SECONDS: u64 = 30 * 60;

/// A subresource of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    /// A pod's container output, served by the node's agent.
    Log,
}

/// A path under `/api` or `/apis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`
    Resources {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
}

/// A collection, an object or an object's subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub resource: &'static ResourceInfo,
    /// The namespace of the path (`None` for all namespaces or a
    /// cluster-scoped kind).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

impl ResourcePath {
    /// The namespace objects of this path live in: the path's for a
    /// namespaced kind, `""` for a cluster-scoped one.
    pub fn object_namespace(&self) -> &str {
        if self.resource.namespaced {
            self.namespace.as_deref().unwrap_or("")
        } else {
            ""
        }
    }
}

/// Parses a path under `/api` or `/apis`; `None` for a path naming nothing
/// skiff serves.
pub fn parse_path(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["apis", g] => {
            return resources::RESOURCES
                .iter()
                .any(|r| r.group == *g)
                .then(|| Route::Group(g.to_string()));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if !resources::RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
    {
        return None;
    }
    if rest.is_empty() {
        return Some(Route::Resources {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    let find = |plural: &str| resources::by_plural(group, plural).filter(|r| r.version == version);
    let namespaced = |plural: &str| find(plural).filter(|r| r.namespaced);
    let sub = |s: &str| match s {
        "status" => Some(Subresource::Status),
        "scale" => Some(Subresource::Scale),
        "log" => Some(Subresource::Log),
        _ => None,
    };
    let path = |resource, namespace: Option<&str>, name: Option<&str>, subresource| {
        Some(Route::Resource(ResourcePath {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource,
        }))
    };
    match rest {
        ["namespaces", ns, plural] if namespaced(plural).is_some() => {
            path(namespaced(plural)?, Some(ns), None, None)
        }
        ["namespaces", ns, plural, name] => path(namespaced(plural)?, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, s] => {
            path(namespaced(plural)?, Some(ns), Some(name), Some(sub(s)?))
        }
        [plural] => path(find(plural)?, None, None, None),
        [plural, name] => {
            let r = find(plural)?;
            if r.namespaced {
                return None;
            }
            path(r, None, Some(name), None)
        }
        [plural, name, s] => {
            let r = find(plural)?;
            if r.namespaced {
                return None;
            }
            path(r, None, Some(name), Some(sub(s)?))
        }
        _ => None,
    }
}

/// Where a paged list goes on: the revision of its first page and the last
/// key returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continue {
    pub revision: i64,
    pub last_key: String,
}

impl Continue {
    /// The opaque token: hex of `revision/last_key`.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.revision, self.last_key)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn decode(token: &str) -> Result<Continue, ApiError> {
        let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
        if !token.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())
            })
            .collect::<Result<Vec<u8>, _>>()?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (rev, key) = text.split_once('/').ok_or_else(bad)?;
        let revision = rev.parse::<i64>().map_err(|_| bad())?;
        if revision <= 0 || !key.starts_with('/') {
            return Err(bad());
        }
        Ok(Continue {
            revision,
            last_key: key.to_string(),
        })
    }
}

/// The options of a list or watch (`GET` on a collection).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: Selector,
    pub fields: FieldSelector,
    pub limit: Option<i64>,
    pub continue_from: Option<Continue>,
    /// `resourceVersion`, parsed; `None` when absent or `"0"`.
    pub resource_version: Option<i64>,
    /// `resourceVersionMatch=Exact`.
    pub exact: bool,
    pub watch: bool,
    pub bookmarks: bool,
    pub timeout_seconds: u64,
}

fn parse_bool(v: &str) -> bool {
    matches!(v, "true" | "1" | "True")
}

/// A resourceVersion parameter: `None` for absent, empty or `"0"`.
pub fn parse_resource_version(v: Option<&str>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "invalid resource version {s:?}"
            ))),
        },
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl ListOptions {
    /// Reads the query parameters of a list or watch of `resource`.
    pub fn parse(
        params: &[(String, String)],
        resource: &ResourceInfo,
    ) -> Result<ListOptions, ApiError> {
        let labels = Selector::parse(param(params, "labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse_for_kind(
            param(params, "fieldSelector").unwrap_or(""),
            resource.kind,
        )
        .map_err(|e| match e {
            FieldSelectorError::UnsupportedField(f) => {
                ApiError::BadRequest(format!("field label not supported: {f}"))
            }
            other => ApiError::BadRequest(other.to_string()),
        })?;
        let limit = match param(params, "limit") {
            None | Some("") => None,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n > 0 => Some(n.min(MAX_LIST_LIMIT)),
                Ok(_) => None,
                Err(_) => return Err(ApiError::BadRequest(format!("invalid limit {s:?}"))),
            },
        };
        let continue_from = match param(params, "continue") {
            None | Some("") => None,
            Some(t) => Some(Continue::decode(t)?),
        };
        let resource_version = parse_resource_version(param(params, "resourceVersion"))?;
        let watch = param(params, "watch").is_some_and(parse_bool);
        if continue_from.is_some() && resource_version.is_some() && !watch {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".to_string(),
            ));
        }
        let timeout_seconds = match param(params, "timeoutSeconds") {
            None | Some("") => MAX_WATCH_SECONDS,
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {s:?}")))?
                .min(MAX_WATCH_SECONDS),
        };
        Ok(ListOptions {
            labels,
            fields,
            limit,
            continue_from,
            resource_version,
            exact: param(params, "resourceVersionMatch") == Some("Exact"),
            watch,
            bookmarks: param(params, "allowWatchBookmarks").is_some_and(parse_bool),
            timeout_seconds,
        })
    }

    /// Whether an object (JSON) is selected by the label and field selectors.
    pub fn matches(&self, object: &serde_json::Value) -> bool {
        if !self.fields.matches(object) {
            return false;
        }
        if self.labels.is_empty() {
            return true;
        }
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        self.labels.matches(&labels)
    }
}

/// Whether `?dryRun=All` was given; other values are refused.
pub fn dry_run(params: &[(String, String)]) -> Result<bool, ApiError> {
    match param(params, "dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(v) => Err(ApiError::BadRequest(format!(
            "Invalid dry run value {v:?}: only \"All\" is supported"
        ))),
    }
}

/// A query parameter by name (the last one wins).
pub fn query_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    param(params, name)
}

/// The format of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    MergePatch,
    /// RFC 6902 JSON patch.
    JsonPatch,
    StrategicMergePatch,
    /// Server-side apply: YAML or JSON.
    Apply,
}

/// The body format of a `Content-Type`; `None` for one skiff does not read.
pub fn body_format(content_type: Option<&str>) -> Option<BodyFormat> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" | "" => Some(BodyFormat::Json),
        "application/merge-patch+json" => Some(BodyFormat::MergePatch),
        "application/json-patch+json" => Some(BodyFormat::JsonPatch),
        "application/strategic-merge-patch+json" => Some(BodyFormat::StrategicMergePatch),
        "application/apply-patch+yaml" | "application/apply-patch+json" => Some(BodyFormat::Apply),
        _ => None,
    }
}

/// Whether an `Accept` header asks for a `meta.k8s.io` Table (before any
/// plain JSON it also accepts).
pub fn wants_table(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let first = accept.split(',').next().unwrap_or("");
    let params: Vec<String> = first
        .split(';')
        .skip(1)
        .map(|p| p.trim().replace(' ', ""))
        .collect();
    params.iter().any(|p| p == "as=Table") && params.iter().any(|p| p == "g=meta.k8s.io")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(path: &str) -> ResourcePath {
        match parse_path(path) {
            Some(Route::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("/api"), Some(Route::CoreVersions));
        assert_eq!(parse_path("/apis"), Some(Route::Groups));
        assert_eq!(parse_path("/apis/apps"), Some(Route::Group("apps".into())));
        assert_eq!(parse_path("/apis/batch"), None);
        assert_eq!(
            parse_path("/api/v1"),
            Some(Route::Resources {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse_path("/api/v2"), None);
        let p = res("/api/v1/namespaces/default/pods");
        assert_eq!(
            (p.resource.plural, p.namespace.as_deref(), p.name.as_deref()),
            ("pods", Some("default"), None)
        );
        let p = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(p.subresource, Some(Subresource::Status));
        assert_eq!(p.name.as_deref(), Some("web"));
        let p = res("/apis/apps/v1/namespaces/prod/deployments/web/scale");
        assert_eq!(p.subresource, Some(Subresource::Scale));
        assert_eq!(p.resource.kind, "Deployment");
        let p = res("/api/v1/pods");
        assert_eq!((p.namespace, p.name), (None, None));
        let p = res("/api/v1/nodes/n1/status");
        assert_eq!(p.resource.kind, "Node");
        assert_eq!(p.subresource, Some(Subresource::Status));
        let p = res("/api/v1/namespaces/prod");
        assert_eq!(p.resource.kind, "Namespace");
        assert_eq!(p.name.as_deref(), Some("prod"));
        let p = res("/api/v1/namespaces/prod/status");
        assert_eq!(
            (p.resource.kind, p.subresource),
            ("Namespace", Some(Subresource::Status))
        );
        // Namespaced kinds need a namespace to name an object; deployments
        // are not in the core group; unknown subresources are refused.
        assert_eq!(parse_path("/api/v1/pods/web"), None);
        assert_eq!(parse_path("/api/v1/namespaces/d/deployments"), None);
        assert_eq!(parse_path("/api/v1/namespaces/d/pods/web/exec"), None);
        assert_eq!(parse_path("/apis/apps/v1/pods"), None);
    }

    #[test]
    fn continue_tokens_round_trip() {
        let c = Continue {
            revision: 42,
            last_key: "/registry/pods/default/web-1".into(),
        };
        assert_eq!(Continue::decode(&c.encode()).unwrap(), c);
        assert!(Continue::decode("zz").is_err());
        assert!(Continue::decode("abc").is_err());
        assert!(
            Continue::decode(
                &"0/x"
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
            .is_err()
        );
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_options() {
        let pods = resources::lookup("pods").unwrap();
        let o = ListOptions::parse(
            &params(&[
                ("labelSelector", "app=web"),
                ("fieldSelector", "spec.nodeName=n1"),
                ("limit", "100000"),
                ("watch", "1"),
                ("resourceVersion", "7"),
                ("timeoutSeconds", "5"),
                ("allowWatchBookmarks", "true"),
            ]),
            pods,
        )
        .unwrap();
        assert_eq!(o.limit, Some(MAX_LIST_LIMIT));
        assert!(o.watch && o.bookmarks);
        assert_eq!((o.resource_version, o.timeout_seconds), (Some(7), 5));
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        assert!(o.matches(&obj));
        let other =
            json!({"metadata": {"name": "a", "labels": {"app": "db"}}, "spec": {"nodeName": "n1"}});
        assert!(!o.matches(&other));
        let unscheduled = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {}});
        assert!(!o.matches(&unscheduled));
        let e = ListOptions::parse(&params(&[("fieldSelector", "spec.foo=1")]), pods).unwrap_err();
        assert_eq!(e.to_string(), "field label not supported: spec.foo");
        assert!(ListOptions::parse(&params(&[("labelSelector", "a in (")]), pods).is_err());
        let d = ListOptions::parse(&params(&[("resourceVersion", "0")]), pods).unwrap();
        assert_eq!(d.resource_version, None);
        assert!(!d.watch);
        assert_eq!(d.timeout_seconds, MAX_WATCH_SECONDS);
    }

    #[test]
    fn formats() {
        assert_eq!(body_format(None), Some(BodyFormat::Json));
        assert_eq!(
            body_format(Some("application/json; charset=utf-8")),
            Some(BodyFormat::Json)
        );
        assert_eq!(
            body_format(Some("application/strategic-merge-patch+json")),
            Some(BodyFormat::StrategicMergePatch)
        );
        assert_eq!(
            body_format(Some("application/apply-patch+yaml")),
            Some(BodyFormat::Apply)
        );
        assert_eq!(body_format(Some("text/plain")), None);
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
        assert!(dry_run(&params(&[("dryRun", "All")])).unwrap());
        assert!(dry_run(&params(&[("dryRun", "x")])).is_err());
    }
}
