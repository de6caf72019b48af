//! What Docker should run for a pod: container names, labels, and the
//! [`ContainerSpec`] of the pause container and of each app container.
//! Pure: no IO.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use skiff_model::Pod;
use skiff_model::pod::Container;

use crate::runtime::{ContainerInfo, ContainerSpec, PortBinding};

/// Labels every container of a pod carries.
pub const LABEL_NODE: &str = "skiff.node";
pub const LABEL_NAMESPACE: &str = "skiff.pod.namespace";
pub const LABEL_POD: &str = "skiff.pod.name";
pub const LABEL_UID: &str = "skiff.pod.uid";
pub const LABEL_CONTAINER: &str = "skiff.container.name";
/// `pause` or `app`.
pub const LABEL_ROLE: &str = "skiff.container.role";
/// 0 for the first run of a container, n after n restarts.
pub const LABEL_ATTEMPT: &str = "skiff.container.attempt";

pub use skiff_model::HOST_PORTS_ANNOTATION;

/// The container name Kubernetes gives the pause container.
pub const PAUSE_NAME: &str = "POD";

/// The role of a container of ours.
pub fn role(c: &ContainerInfo) -> &str {
    c.labels.get(LABEL_ROLE).map_or("", String::as_str)
}

/// The attempt number of a container of ours.
pub fn attempt(c: &ContainerInfo) -> i32 {
    c.labels
        .get(LABEL_ATTEMPT)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// The pod container name a container of ours runs.
pub fn container_name(c: &ContainerInfo) -> &str {
    c.labels.get(LABEL_CONTAINER).map_or("", String::as_str)
}

fn labels(
    node: &str,
    pod: &Pod,
    container: &str,
    role: &str,
    attempt: i32,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_NAMESPACE.to_string(), pod.metadata.namespace.clone()),
        (LABEL_POD.to_string(), pod.metadata.name.clone()),
        (LABEL_UID.to_string(), pod.metadata.uid.clone()),
        (LABEL_CONTAINER.to_string(), container.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
        (LABEL_ATTEMPT.to_string(), attempt.to_string()),
    ])
}

/// The Docker name of a container: unique per pod uid, container and
/// attempt (`skiff_web_mypod_default_<uid>_0`).
pub fn docker_name(pod: &Pod, container: &str, attempt: i32) -> String {
    format!(
        "skiff_{container}_{}_{}_{}_{attempt}",
        pod.metadata.name, pod.metadata.namespace, pod.metadata.uid
    )
}

/// Where a pod's emptyDir volumes live.
pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid)
}

/// The pause container: it publishes every declared container port on
/// `address` (the hostPort when given, else one Docker picks).
pub fn pause_spec(node: &str, address: &str, pod: &Pod, image: &str) -> ContainerSpec {
    let ports = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.container_port > 0)
        .map(|p| PortBinding {
            container_port: p.container_port as u16,
            protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
            host_ip: p.host_ip.clone().unwrap_or_else(|| address.to_string()),
            host_port: p.host_port.filter(|h| *h > 0).map(|h| h as u16),
        })
        .collect();
    ContainerSpec {
        name: docker_name(pod, PAUSE_NAME, 0),
        image: image.to_string(),
        labels: labels(node, pod, PAUSE_NAME, "pause", 0),
        hostname: Some(
            pod.spec
                .hostname
                .clone()
                .unwrap_or_else(|| pod.metadata.name.clone()),
        ),
        ports,
        ..Default::default()
    }
}

/// Why a container cannot be created as specified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// An app container joining the pause container `pause_id`, with the
/// service variables `service_env` before its own (which win).
pub fn app_spec(
    node: &str,
    pod: &Pod,
    c: &Container,
    attempt: i32,
    pause_id: &str,
    data_dir: &Path,
    service_env: &[(String, String)],
) -> Result<ContainerSpec, SpecError> {
    let mut binds = Vec::new();
    for m in &c.volume_mounts {
        let volume = pod
            .spec
            .volumes
            .iter()
            .find(|v| v.name == m.name)
            .ok_or_else(|| SpecError(format!("volume {:?} is not declared by the pod", m.name)))?;
        let source = if volume.empty_dir.is_some() {
            pod_dir(data_dir, &pod.metadata.uid)
                .join("volumes")
                .join(&volume.name)
        } else if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else {
            return Err(SpecError(format!(
                "volume {:?} has no supported source (emptyDir, hostPath)",
                volume.name
            )));
        };
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        binds.push(format!("{}:{}{ro}", source.display(), m.mount_path));
    }
    let limits = c.resources.as_ref().map(|r| &r.limits);
    let memory_limit_bytes = limits
        .and_then(|l| l.get("memory"))
        .map(|q| i64::try_from(q.value()).unwrap_or(i64::MAX));
    let nano_cpus = limits
        .and_then(|l| l.get("cpu"))
        .map(|q| i64::try_from(q.milli_value() * 1_000_000).unwrap_or(i64::MAX));
    Ok(ContainerSpec {
        name: docker_name(pod, &c.name, attempt),
        image: c.image.clone().unwrap_or_default(),
        entrypoint: (!c.command.is_empty()).then(|| c.command.clone()),
        cmd: (!c.args.is_empty()).then(|| c.args.clone()),
        env: service_env
            .iter()
            .filter(|(name, _)| !c.env.iter().any(|e| e.name == *name))
            .map(|(name, value)| format!("{name}={value}"))
            .chain(
                c.env
                    .iter()
                    .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or(""))),
            )
            .collect(),
        working_dir: c.working_dir.clone(),
        labels: labels(node, pod, &c.name, "app", attempt),
        network_mode: Some(format!("container:{pause_id}")),
        binds,
        memory_limit_bytes,
        nano_cpus,
        ..Default::default()
    })
}

/// The directories a pod's emptyDir volumes need.
pub fn empty_dirs(data_dir: &Path, pod: &Pod) -> Vec<PathBuf> {
    pod.spec
        .volumes
        .iter()
        .filter(|v| v.empty_dir.is_some())
        .map(|v| {
            pod_dir(data_dir, &pod.metadata.uid)
                .join("volumes")
                .join(&v.name)
        })
        .collect()
}

/// The hostPath directories to create (`DirectoryOrCreate`).
pub fn host_dirs_to_create(pod: &Pod) -> Vec<PathBuf> {
    pod.spec
        .volumes
        .iter()
        .filter_map(|v| v.host_path.as_ref())
        .filter(|h| h.type_.as_deref() == Some("DirectoryOrCreate"))
        .map(|h| PathBuf::from(&h.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "app", "image": "busybox:1",
                    "command": ["httpd"], "args": ["-f", "-p", "8080"],
                    "workingDir": "/srv",
                    "env": [{"name": "MODE", "value": "prod"}],
                    "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353}],
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                     {"name": "logs", "mountPath": "/logs", "readOnly": true}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}},
                            {"name": "logs", "hostPath": {"path": "/var/log"}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn pause_publishes_every_port() {
        let s = pause_spec("n1", "127.0.0.1", &pod(), "skiff/pause:1");
        assert_eq!(s.name, "skiff_POD_web_default_u1_0");
        assert_eq!(s.hostname.as_deref(), Some("web"));
        assert_eq!(
            s.ports,
            vec![
                PortBinding {
                    container_port: 8080,
                    protocol: "tcp".into(),
                    host_ip: "127.0.0.1".into(),
                    host_port: None
                },
                PortBinding {
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: "127.0.0.1".into(),
                    host_port: Some(5353)
                },
            ]
        );
        assert_eq!(s.labels[LABEL_ROLE], "pause");
    }

    #[test]
    fn app_container_joins_the_pause_one() {
        let p = pod();
        let s = app_spec(
            "n1",
            &p,
            &p.spec.containers[0],
            2,
            "abc",
            Path::new("/d"),
            &[],
        )
        .unwrap();
        assert_eq!(s.name, "skiff_app_web_default_u1_2");
        assert_eq!(s.network_mode.as_deref(), Some("container:abc"));
        assert_eq!(s.entrypoint, Some(vec!["httpd".to_string()]));
        assert_eq!(s.cmd, Some(vec!["-f".into(), "-p".into(), "8080".into()]));
        assert_eq!(s.env, vec!["MODE=prod"]);
        assert_eq!(s.working_dir.as_deref(), Some("/srv"));
        assert_eq!(s.memory_limit_bytes, Some(64 << 20));
        assert_eq!(s.nano_cpus, Some(500_000_000));
        assert_eq!(
            s.binds,
            vec!["/d/pods/u1/volumes/data:/data", "/var/log:/logs:ro"]
        );
        assert_eq!(s.labels[LABEL_ATTEMPT], "2");
        assert_eq!(s.labels[LABEL_UID], "u1");
        assert_eq!(s.labels[LABEL_CONTAINER], "app");
    }

    #[test]
    fn an_undeclared_volume_is_an_error() {
        let mut p = pod();
        p.spec.volumes.clear();
        let c = p.spec.containers[0].clone();
        assert!(app_spec("n1", &p, &c, 0, "abc", Path::new("/d"), &[]).is_err());
    }

    #[test]
    fn service_variables_come_first_and_the_pods_own_win() {
        let p = pod();
        let env = [
            ("WEB_SERVICE_HOST".to_string(), "172.17.0.1".to_string()),
            ("MODE".to_string(), "from-service".to_string()),
        ];
        let s = app_spec(
            "n1",
            &p,
            &p.spec.containers[0],
            0,
            "abc",
            Path::new("/d"),
            &env,
        )
        .unwrap();
        assert_eq!(s.env, vec!["WEB_SERVICE_HOST=172.17.0.1", "MODE=prod"]);
    }
}
