//! A pod's status from what Docker shows, as the kubelet computes it, and
//! the restart decisions (restart policy, back-off). Pure: no IO.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_model::Pod;
use skiff_model::Time;
use skiff_model::pod::{
    ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodIp, PodStatus,
};

use crate::runtime::{ContainerInfo, ContainerState};

/// A container that ran this long has its restart back-off reset
/// (Kubernetes: 10 minutes).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Why a container waits, when the agent knows better than Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the agent sees of one container of the pod spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The latest attempt.
    pub current: Option<ContainerInfo>,
    /// The attempt before it.
    pub previous: Option<ContainerInfo>,
    /// Set when the container waits for a reason of the agent's
    /// (image missing, back-off).
    pub waiting: Option<Waiting>,
}

/// What the agent sees of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub pause: Option<ContainerInfo>,
    /// By container name of the spec.
    pub containers: BTreeMap<String, Observed>,
    pub host_ip: String,
}

/// Whether a container that exited with `exit_code` is restarted under
/// `policy` (`Always` when unset).
pub fn should_restart(policy: Option<&str>, exit_code: i64) -> bool {
    match policy.unwrap_or("Always") {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// How long to wait after a container's exit before restart number
/// `restarts + 1`, counting restarts since the last back-off reset: none
/// before the first restart, then `initial`, doubling up to `max`.
pub fn restart_delay(restarts: u32, initial: Duration, max: Duration) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(restarts - 1).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// Whether a run from `started` to `finished` was long enough to reset the
/// back-off.
pub fn ran_long(started: Option<Time>, finished: Option<Time>) -> bool {
    match (started, finished) {
        (Some(s), Some(f)) => {
            f.unix_seconds() - s.unix_seconds() >= BACKOFF_RESET_AFTER.as_secs() as i64
        }
        _ => false,
    }
}

fn terminated(c: &ContainerInfo) -> Option<ContainerStateTerminated> {
    let ContainerState::Exited {
        exit_code,
        oom_killed,
        error,
        started_at,
        finished_at,
    } = &c.state
    else {
        return None;
    };
    let reason = if *oom_killed {
        "OOMKilled"
    } else if error.is_some() {
        "StartError"
    } else if *exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Some(ContainerStateTerminated {
        exit_code: *exit_code as i32,
        reason: Some(reason.to_string()),
        message: error.clone(),
        started_at: *started_at,
        finished_at: *finished_at,
        container_id: Some(format!("docker://{}", c.id)),
        ..Default::default()
    })
}

fn container_status(name: &str, image: &str, o: &Observed) -> ContainerStatus {
    let cur = o.current.as_ref();
    let mut s = ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: cur.map(|c| c.image_id.clone()).unwrap_or_default(),
        container_id: cur.map(|c| format!("docker://{}", c.id)),
        restart_count: cur.map_or(0, super::spec::attempt),
        ..Default::default()
    };
    let waiting = |reason: &str, message: Option<String>| KState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    };
    let last_terminated = o.previous.as_ref().and_then(terminated);
    match (cur.map(|c| &c.state), &o.waiting) {
        (_, Some(w)) => {
            s.state = Some(waiting(&w.reason, Some(w.message.clone())));
            s.started = Some(false);
            // A container waiting to restart shows the run that ended.
            let last = cur.and_then(terminated).or(last_terminated);
            s.last_state = last.map(|t| KState {
                terminated: Some(t),
                ..Default::default()
            });
        }
        (None, None) | (Some(ContainerState::Created), None) => {
            s.state = Some(waiting("ContainerCreating", None));
            s.started = Some(false);
            s.last_state = last_terminated.map(|t| KState {
                terminated: Some(t),
                ..Default::default()
            });
        }
        (Some(ContainerState::Running { started_at }), None) => {
            s.state = Some(KState {
                running: Some(ContainerStateRunning {
                    started_at: *started_at,
                }),
                ..Default::default()
            });
            s.ready = true;
            s.started = Some(true);
            s.last_state = last_terminated.map(|t| KState {
                terminated: Some(t),
                ..Default::default()
            });
        }
        (Some(ContainerState::Exited { .. }), None) => {
            s.state = Some(KState {
                terminated: cur.and_then(terminated),
                ..Default::default()
            });
            s.started = Some(false);
            s.last_state = last_terminated.map(|t| KState {
                terminated: Some(t),
                ..Default::default()
            });
        }
    }
    s
}

/// The phase from container statuses, as the kubelet's `getPhase`.
pub fn phase(statuses: &[ContainerStatus], policy: Option<&str>) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if statuses.is_empty() || waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped > 0 => match policy.unwrap_or("Always") {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        },
        _ => "Pending",
    }
}

/// Whether a phase is final: the pod never runs again.
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn pod_condition(type_: &str, on: bool, previous: Option<&PodStatus>, now: Time) -> PodCondition {
    let status = if on { "True" } else { "False" };
    let kept = previous
        .and_then(|p| p.condition(type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time);
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: (!on && matches!(type_, "Ready" | "ContainersReady"))
            .then(|| "ContainersNotReady".to_string()),
        last_transition_time: kept.or(Some(now)),
        ..Default::default()
    }
}

/// The pod's status. A pod whose previous phase was final keeps it; times
/// are kept from `previous` where nothing changed, so computing twice from
/// the same view gives the same status.
pub fn pod_status(pod: &Pod, view: &PodView, now: Time) -> PodStatus {
    let previous = pod.status.as_ref();
    let statuses: Vec<ContainerStatus> = pod
        .spec
        .containers
        .iter()
        .map(|c| {
            let observed = view.containers.get(&c.name).cloned().unwrap_or_default();
            container_status(&c.name, c.image.as_deref().unwrap_or(""), &observed)
        })
        .collect();
    let policy = pod.spec.restart_policy.as_deref();
    let prev_phase = previous.and_then(|p| p.phase.as_deref());
    let phase = if is_terminal(prev_phase) {
        prev_phase.unwrap_or_default()
    } else {
        phase(&statuses, policy)
    };
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let pod_ip = view
        .pause
        .as_ref()
        .filter(|p| p.is_running())
        .and_then(|p| p.ip.clone())
        .or_else(|| previous.and_then(|p| p.pod_ip.clone()));
    let ready = all_ready && phase == "Running";
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: vec![
            pod_condition("Initialized", true, previous, now),
            pod_condition("Ready", ready, previous, now),
            pod_condition("ContainersReady", ready, previous, now),
            pod_condition("PodScheduled", true, previous, now),
        ],
        pod_ips: pod_ip.iter().map(|ip| PodIp { ip: ip.clone() }).collect(),
        pod_ip,
        host_ip: Some(view.host_ip.clone()),
        host_ips: vec![PodIp {
            ip: view.host_ip.clone(),
        }],
        start_time: previous.and_then(|p| p.start_time).or(Some(now)),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        container_statuses: statuses,
        ..Default::default()
    }
}

/// The published ports as the [`HOST_PORTS_ANNOTATION`] lists them, or
/// `None` when nothing is published.
///
/// [`HOST_PORTS_ANNOTATION`]: super::spec::HOST_PORTS_ANNOTATION
pub fn host_ports(pod: &Pod, pause: &ContainerInfo) -> Option<String> {
    let mut out = Vec::new();
    for c in &pod.spec.containers {
        for p in &c.ports {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let key = (p.container_port as u16, proto.to_lowercase());
            if let Some(host_port) = pause.published.get(&key) {
                let mut entry = json!({
                    "container": c.name,
                    "containerPort": p.container_port,
                    "protocol": proto,
                    "hostPort": host_port,
                });
                if let Some(name) = &p.name {
                    entry["name"] = Value::String(name.clone());
                }
                out.push(entry);
            }
        }
    }
    (!out.is_empty()).then(|| Value::Array(out).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(attempt: i32, state: ContainerState) -> ContainerInfo {
        ContainerInfo {
            id: format!("id{attempt}"),
            name: String::new(),
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            labels: BTreeMap::from([(
                super::super::spec::LABEL_ATTEMPT.to_string(),
                attempt.to_string(),
            )]),
            state,
            ip: None,
            published: BTreeMap::new(),
        }
    }

    fn exited(code: i64) -> ContainerState {
        ContainerState::Exited {
            exit_code: code,
            oom_killed: false,
            error: None,
            started_at: Some(Time::from_unix(10)),
            finished_at: Some(Time::from_unix(20)),
        }
    }

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    fn view(o: Observed) -> PodView {
        PodView {
            pause: None,
            containers: BTreeMap::from([("c".to_string(), o)]),
            host_ip: "127.0.0.1".into(),
        }
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart(None, 0));
        assert!(should_restart(Some("OnFailure"), 1));
        assert!(!should_restart(Some("OnFailure"), 0));
        assert!(!should_restart(Some("Never"), 1));
    }

    #[test]
    fn back_off_doubles_to_the_maximum() {
        let (i, m) = (Duration::from_secs(10), Duration::from_secs(300));
        let delays: Vec<u64> = (0..8).map(|n| restart_delay(n, i, m).as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(restart_delay(200, i, m), m);
        assert!(ran_long(
            Some(Time::from_unix(0)),
            Some(Time::from_unix(600))
        ));
        assert!(!ran_long(
            Some(Time::from_unix(0)),
            Some(Time::from_unix(599))
        ));
    }

    #[test]
    fn phases() {
        let p = pod("Never");
        let s = pod_status(&p, &view(Observed::default()), Time::from_unix(1));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let run = Observed {
            current: Some(info(
                0,
                ContainerState::Running {
                    started_at: Some(Time::from_unix(5)),
                },
            )),
            ..Default::default()
        };
        let s = pod_status(&p, &view(run), Time::from_unix(1));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(s.container_statuses[0].ready);
        assert_eq!(s.condition("Ready").unwrap().status, "True");
        let done = |code| Observed {
            current: Some(info(0, exited(code))),
            ..Default::default()
        };
        assert_eq!(
            pod_status(&p, &view(done(0)), Time::from_unix(1))
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        let failed = pod_status(&p, &view(done(1)), Time::from_unix(1));
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        let t = failed.container_statuses[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
        // OnFailure: a failed container restarts, the pod stays Running.
        let s = pod_status(&pod("OnFailure"), &view(done(1)), Time::from_unix(1));
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn crash_loop_and_image_waits() {
        let p = pod("Always");
        let o = Observed {
            current: Some(info(3, exited(1))),
            previous: Some(info(2, exited(1))),
            waiting: Some(Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 40s".into(),
            }),
        };
        let s = pod_status(&p, &view(o), Time::from_unix(1));
        let c = &s.container_statuses[0];
        assert_eq!(c.restart_count, 3);
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let o = Observed {
            waiting: Some(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: "m".into(),
            }),
            ..Default::default()
        };
        let s = pod_status(&p, &view(o), Time::from_unix(1));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn oom_killed_and_stable_recomputation() {
        let p = pod("Never");
        let o = Observed {
            current: Some(info(
                0,
                ContainerState::Exited {
                    exit_code: 137,
                    oom_killed: true,
                    error: None,
                    started_at: None,
                    finished_at: None,
                },
            )),
            ..Default::default()
        };
        let first = pod_status(&p, &view(o.clone()), Time::from_unix(1));
        let t = first.container_statuses[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("OOMKilled"));
        let mut p2 = p.clone();
        p2.status = Some(first.clone());
        let second = pod_status(&p2, &view(o), Time::from_unix(99));
        assert_eq!(first, second);
    }

    #[test]
    fn terminal_phases_stay() {
        let mut p = pod("Always");
        p.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let s = pod_status(&p, &view(Observed::default()), Time::from_unix(1));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    }
}
