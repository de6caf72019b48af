//! The resource table: for each kind its API group and version, names
//! (plural, singular, short names), scope, and where its objects live in the
//! store.
//!
//! Store keys follow kube-apiserver: `/registry/<resource>/<namespace>/<name>`
//! for namespaced kinds, `/registry/<resource>/<name>` for cluster-scoped
//! ones, with `<resource>` the plural resource name, except that Services
//! live under `/registry/services/specs/` and Endpoints under
//! `/registry/services/endpoints/` as in Kubernetes. (kube-apiserver also
//! renames two others, `controllers` and `minions`; skiff keeps the plural
//! names for those.)

/// Root of every key skiff's API server writes.
pub const REGISTRY_ROOT: &str = "/registry";

/// The verbs every resource serves (for API discovery).
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One row of the resource table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group: `""` for the core group, `"apps"`.
    pub group: &'static str,
    /// API version within the group: `"v1"`.
    pub version: &'static str,
    /// `apiVersion` of objects: `"v1"`, `"apps/v1"`.
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Kind of the list: `"PodList"`.
    pub list_kind: &'static str,
    /// Resource name in URLs and keys: `"pods"`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// The part of the store key after `/registry/`: usually `plural`.
    pub key_segment: &'static str,
}

/// Why an object has no store key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a name is required")]
    MissingName,
    #[error("a namespace is required for {0}")]
    MissingNamespace(&'static str),
    #[error("{field} {value:?} may not contain '/'")]
    Slash { field: &'static str, value: String },
}

const fn core(
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    key_segment: &'static str,
) -> ResourceInfo {
    ResourceInfo {
        group: "",
        version: "v1",
        api_version: "v1",
        kind,
        list_kind,
        plural,
        singular,
        short_names,
        namespaced,
        key_segment,
    }
}

const fn apps(
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group: "apps",
        version: "v1",
        api_version: "apps/v1",
        kind,
        list_kind,
        plural,
        singular,
        short_names,
        namespaced: true,
        key_segment: plural,
    }
}

/// Every kind skiff serves.
pub const RESOURCES: &[ResourceInfo] = &[
    core(
        "Namespace",
        "NamespaceList",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        "namespaces",
    ),
    core("Node", "NodeList", "nodes", "node", &["no"], false, "nodes"),
    core("Pod", "PodList", "pods", "pod", &["po"], true, "pods"),
    core(
        "ReplicationController",
        "ReplicationControllerList",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        true,
        "replicationcontrollers",
    ),
    core(
        "Service",
        "ServiceList",
        "services",
        "service",
        &["svc"],
        true,
        "services/specs",
    ),
    core(
        "Endpoints",
        "EndpointsList",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        "services/endpoints",
    ),
    core(
        "Event",
        "EventList",
        "events",
        "event",
        &["ev"],
        true,
        "events",
    ),
    apps(
        "ReplicaSet",
        "ReplicaSetList",
        "replicasets",
        "replicaset",
        &["rs"],
    ),
    apps(
        "Deployment",
        "DeploymentList",
        "deployments",
        "deployment",
        &["deploy"],
    ),
];

impl ResourceInfo {
    /// The store key of one object: `/registry/pods/default/web`,
    /// `/registry/nodes/node-1`. The namespace is ignored for cluster-scoped
    /// kinds.
    pub fn key(&self, namespace: &str, name: &str) -> Result<String, KeyError> {
        if name.is_empty() {
            return Err(KeyError::MissingName);
        }
        check_segment("name", name)?;
        if self.namespaced {
            if namespace.is_empty() {
                return Err(KeyError::MissingNamespace(self.plural));
            }
            check_segment("namespace", namespace)?;
            Ok(format!(
                "{REGISTRY_ROOT}/{}/{namespace}/{name}",
                self.key_segment
            ))
        } else {
            Ok(format!("{REGISTRY_ROOT}/{}/{name}", self.key_segment))
        }
    }

    /// The key prefix of every object of this kind in `namespace`, or in all
    /// namespaces when `None` (or for a cluster-scoped kind). Ends with `/`,
    /// so that namespace `a` does not also cover namespace `ab`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => {
                format!("{REGISTRY_ROOT}/{}/{ns}/", self.key_segment)
            }
            _ => format!("{REGISTRY_ROOT}/{}/", self.key_segment),
        }
    }

    /// The REST path of the collection: `/api/v1/namespaces/default/pods`,
    /// `/apis/apps/v1/deployments` (all namespaces), `/api/v1/nodes`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        }
    }

    /// The REST path of one object: `/api/v1/namespaces/default/pods/web`.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        let ns = self.namespaced.then_some(namespace);
        format!("{}/{name}", self.collection_path(ns))
    }

    /// `deployment.apps` / `pod`: the name kubectl prints before `/name`.
    pub fn qualified_singular(&self) -> String {
        if self.group.is_empty() {
            self.singular.to_string()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }
}

fn check_segment(field: &'static str, value: &str) -> Result<(), KeyError> {
    if value.contains('/') {
        return Err(KeyError::Slash {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Finds a resource by plural, singular, short name or kind, ignoring case,
/// optionally qualified by its group or version and group
/// (`deployments.apps`, `deploy.v1.apps`) as the CLI accepts.
pub fn lookup(name: &str) -> Option<&'static ResourceInfo> {
    let name = name.to_ascii_lowercase();
    let matches = |r: &ResourceInfo, n: &str| {
        r.plural == n
            || r.singular == n
            || r.short_names.contains(&n)
            || r.kind.eq_ignore_ascii_case(n)
    };
    if let Some(r) = RESOURCES.iter().find(|r| matches(r, &name)) {
        return Some(r);
    }
    let (base, rest) = name.split_once('.')?;
    // `<name>.<group>` or `<name>.<version>.<group>`; the core group is `""`
    // (`pods.v1.`).
    RESOURCES.iter().find(|r| {
        matches(r, base) && (rest == r.group || rest == format!("{}.{}", r.version, r.group))
    })
}

/// Finds a resource by `apiVersion` and kind, exactly.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
}

/// Finds a resource by API group and plural, as in a REST path.
pub fn by_plural(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let pods = lookup("pods").unwrap();
        assert_eq!(
            pods.key("default", "web").unwrap(),
            "/registry/pods/default/web"
        );
        assert_eq!(pods.prefix(Some("default")), "/registry/pods/default/");
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let nodes = lookup("node").unwrap();
        assert_eq!(nodes.key("", "node-1").unwrap(), "/registry/nodes/node-1");
        assert_eq!(
            nodes.key("ignored", "node-1").unwrap(),
            "/registry/nodes/node-1"
        );
        assert_eq!(nodes.prefix(Some("default")), "/registry/nodes/");
        let svc = lookup("svc").unwrap();
        assert_eq!(
            svc.key("default", "web").unwrap(),
            "/registry/services/specs/default/web"
        );
        assert_eq!(svc.prefix(None), "/registry/services/specs/");
        let ep = lookup("ep").unwrap();
        assert_eq!(
            ep.key("default", "web").unwrap(),
            "/registry/services/endpoints/default/web"
        );
        assert_eq!(
            lookup("rc").unwrap().key("a", "b").unwrap(),
            "/registry/replicationcontrollers/a/b"
        );
        assert_eq!(
            lookup("ns").unwrap().key("", "prod").unwrap(),
            "/registry/namespaces/prod"
        );
        assert_eq!(
            lookup("deploy").unwrap().key("prod", "web").unwrap(),
            "/registry/deployments/prod/web"
        );
    }

    #[test]
    fn key_errors() {
        let pods = lookup("po").unwrap();
        assert_eq!(pods.key("default", ""), Err(KeyError::MissingName));
        assert_eq!(pods.key("", "web"), Err(KeyError::MissingNamespace("pods")));
        assert!(matches!(
            pods.key("default", "a/b"),
            Err(KeyError::Slash { field: "name", .. })
        ));
        assert!(matches!(
            pods.key("a/b", "web"),
            Err(KeyError::Slash {
                field: "namespace",
                ..
            })
        ));
    }

    #[test]
    fn prefixes_do_not_overlap() {
        // Every key of one kind starts with that kind's all-namespaces prefix
        // and with no other kind's.
        for r in RESOURCES {
            let key = r.key("ns1", "obj").unwrap();
            for other in RESOURCES {
                assert_eq!(
                    key.starts_with(&other.prefix(None)),
                    r == other,
                    "{key} vs {}",
                    other.plural
                );
            }
        }
        let pods = lookup("pods").unwrap();
        assert!(
            !pods
                .key("ab", "x")
                .unwrap()
                .starts_with(&pods.prefix(Some("a")))
        );
    }

    #[test]
    fn lookup_by_every_name() {
        for (name, kind) in [
            ("po", "Pod"),
            ("pod", "Pod"),
            ("pods", "Pod"),
            ("Pod", "Pod"),
            ("PODS", "Pod"),
            ("no", "Node"),
            ("nodes", "Node"),
            ("ns", "Namespace"),
            ("namespace", "Namespace"),
            ("rc", "ReplicationController"),
            ("replicationcontrollers", "ReplicationController"),
            ("rs", "ReplicaSet"),
            ("replicaset", "ReplicaSet"),
            ("deploy", "Deployment"),
            ("deployments", "Deployment"),
            ("Deployment", "Deployment"),
            ("deployments.apps", "Deployment"),
            ("deploy.apps", "Deployment"),
            ("svc", "Service"),
            ("service", "Service"),
            ("ep", "Endpoints"),
            ("endpoints", "Endpoints"),
            ("ev", "Event"),
            ("events", "Event"),
        ] {
            assert_eq!(lookup(name).map(|r| r.kind), Some(kind), "{name}");
        }
        assert_eq!(
            lookup("deployments.v1.apps").map(|r| r.kind),
            Some("Deployment")
        );
        assert_eq!(lookup("pods.v1.").map(|r| r.kind), Some("Pod"));
        assert_eq!(lookup("deployments.v2.apps"), None);
        assert_eq!(lookup("pods.apps"), None);
        assert_eq!(lookup("widgets"), None);
        assert_eq!(lookup(""), None);
    }

    #[test]
    fn by_kind_and_plural() {
        assert_eq!(
            by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(by_kind("v1", "Deployment"), None);
        assert_eq!(by_plural("", "pods").unwrap().kind, "Pod");
        assert_eq!(by_plural("apps", "pods"), None);
    }

    #[test]
    fn rest_paths() {
        let pods = lookup("pods").unwrap();
        assert_eq!(
            pods.collection_path(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        assert_eq!(
            pods.object_path("default", "web"),
            "/api/v1/namespaces/default/pods/web"
        );
        let deploy = lookup("deploy").unwrap();
        assert_eq!(
            deploy.object_path("prod", "web"),
            "/apis/apps/v1/namespaces/prod/deployments/web"
        );
        assert_eq!(deploy.qualified_singular(), "deployment.apps");
        assert_eq!(pods.qualified_singular(), "pod");
        assert_eq!(
            lookup("no").unwrap().object_path("x", "n1"),
            "/api/v1/nodes/n1"
        );
    }

    #[test]
    fn table_is_consistent() {
        for r in RESOURCES {
            let expected = if r.group.is_empty() {
                r.version.to_string()
            } else {
                format!("{}/{}", r.group, r.version)
            };
            assert_eq!(r.api_version, expected);
            assert_eq!(r.list_kind, format!("{}List", r.kind));
            assert_eq!(by_kind(r.api_version, r.kind), Some(r));
            assert!(STANDARD_VERBS.contains(&"watch"));
        }
    }
}
