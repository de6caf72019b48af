//! One pod's worker: makes Docker match the pod and writes the pod's
//! status when it changes. Workers of different pods run concurrently, so
//! a pod stopping slowly holds up no other.
//!
//! A reconcile lists the pod's containers (label `skiff.pod.uid`), then:
//! the pause container is created (with every declared port published) if
//! it is missing or dead, in which case app containers still running in
//! the dead network namespace are removed first; each app container of the
//! spec is created and started when it has never run, restarted as a new
//! container (attempt n+1) when it exited and the restart policy says so
//! and its back-off has passed; containers no longer in the spec and
//! attempts older than the previous one are removed. The status is
//! computed from what Docker shows then ([`super::status`]) and written
//! with a compare-and-swap when it differs from the stored one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_model::core::ObjectReference;
use skiff_model::pod::{Container, PodStatus};
use skiff_model::{Pod, Time};
use skiff_runtime::{EventRecorder, EventType, Registry, RegistryError};
use tokio::time::Instant;

use super::PodConfig;
use super::spec::{self, HOST_PORTS_ANNOTATION, LABEL_UID, SpecError};
use super::status::{self, Observed, PodView, Waiting};
use crate::runtime::{ContainerInfo, ContainerRuntime, ContainerState, RuntimeError};

/// How long the pause container gets to exit on SIGTERM.
const PAUSE_STOP_GRACE: Duration = Duration::from_secs(2);
/// Attempts at deleting a finalized pod before giving up for this round.
const MAX_FINALIZE_ATTEMPTS: u32 = 8;
/// Pause before trying again to start a pod whose pause container failed.
const SANDBOX_RETRY: Duration = Duration::from_secs(5);
/// Kubernetes' default grace period.
const DEFAULT_GRACE_PERIOD_S: i64 = 30;

/// Why a reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("docker: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("store: {0}")]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("pod object: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A pod as read from the store.
#[derive(Debug, Clone)]
pub struct StoredPod {
    pub key: String,
    pub pod: Pod,
}

/// A failed pull of one image and when to try again.
#[derive(Debug, Clone)]
struct PullFailure {
    failures: u32,
    next_try: Instant,
    message: String,
}

/// The state a worker keeps between reconciles; it can be lost (an agent
/// restart) without harm: restart counts live in container labels.
pub struct Worker<R> {
    pub runtime: R,
    pub registry: Registry,
    pub config: Arc<PodConfig>,
    pub pause_image: String,
    pub events: EventRecorder,
    /// Per container: the attempt at which its back-off was last reset.
    backoff_base: HashMap<String, i32>,
    pulls: HashMap<String, PullFailure>,
    /// Per container: why it waited at the last reconcile, so that an
    /// Event is recorded when the reason changes, not every time.
    last_waiting: HashMap<String, String>,
}

/// The default pull policy of an image: `Always` for `:latest` or no tag.
fn pull_policy(c: &Container) -> &str {
    if let Some(p) = c.image_pull_policy.as_deref() {
        return p;
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None if !last.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

fn secs_between(from: Time, to: Time) -> i64 {
    to.unix_seconds() - from.unix_seconds()
}

impl<R: ContainerRuntime> Worker<R> {
    pub fn new(
        runtime: R,
        registry: Registry,
        config: Arc<PodConfig>,
        pause_image: String,
    ) -> Self {
        let events = EventRecorder::new(registry.clone(), "skiff-agent", config.node_name.clone());
        Worker {
            runtime,
            registry,
            config,
            pause_image,
            events,
            backoff_base: HashMap::new(),
            pulls: HashMap::new(),
            last_waiting: HashMap::new(),
        }
    }

    /// Records an Event about `container` of `pod` (best effort: a failure
    /// is logged, the sync goes on).
    async fn event(
        &self,
        pod: &Pod,
        container: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let involved = ObjectReference {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            field_path: format!("spec.containers{{{container}}}"),
            ..Default::default()
        };
        if let Err(e) = self.events.record(&involved, type_, reason, message).await {
            tracing::debug!(error = %e, reason, "event not recorded");
        }
    }

    /// Events for the containers whose reason to wait changed.
    async fn waiting_events(&mut self, pod: &Pod, waiting: &BTreeMap<String, Waiting>) {
        for (name, w) in waiting {
            if self.last_waiting.get(name) == Some(&w.reason) {
                continue;
            }
            let reason = match w.reason.as_str() {
                "CrashLoopBackOff" | "ImagePullBackOff" => "BackOff",
                "ErrImagePull" | "CreateContainerError" | "CreateContainerConfigError" => "Failed",
                other => other,
            };
            self.event(pod, name, EventType::Warning, reason, &w.message)
                .await;
        }
        self.last_waiting = waiting
            .iter()
            .map(|(n, w)| (n.clone(), w.reason.clone()))
            .collect();
    }

    async fn list(&self, uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.runtime.list(&format!("{LABEL_UID}={uid}")).await
    }

    /// Makes the image of `c` present: `Err` with why the container waits.
    async fn ensure_image(
        &mut self,
        c: &Container,
        requeue: &mut Option<Duration>,
    ) -> Result<(), Waiting> {
        let image = c.image.clone().unwrap_or_default();
        match self.runtime.image_present(&image).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                return Err(Waiting {
                    reason: "ErrImageInspect".into(),
                    message: e.to_string(),
                });
            }
        }
        if pull_policy(c) == "Never" {
            return Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message: format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                ),
            });
        }
        if let Some(f) = self.pulls.get(&image) {
            let now = Instant::now();
            if now < f.next_try {
                let wait = f.next_try - now;
                *requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                return Err(Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: format!("Back-off pulling image \"{image}\": {}", f.message),
                });
            }
        }
        tracing::info!(image = %image, "pulling image");
        match self.runtime.pull_image(&image).await {
            Ok(()) => {
                self.pulls.remove(&image);
                Ok(())
            }
            Err(e) => {
                let failures = self.pulls.get(&image).map_or(0, |f| f.failures) + 1;
                let delay = status::restart_delay(
                    failures,
                    self.config.restart_backoff,
                    self.config.max_restart_backoff,
                );
                let message = format!("failed to pull image \"{image}\": {e}");
                tracing::warn!(image = %image, error = %e, retry_in_s = delay.as_secs(), "image pull failed");
                self.pulls.insert(
                    image.clone(),
                    PullFailure {
                        failures,
                        next_try: Instant::now() + delay,
                        message: message.clone(),
                    },
                );
                *requeue = Some(requeue.map_or(delay, |r| r.min(delay)));
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message,
                })
            }
        }
    }

    /// Creates and starts attempt `attempt` of `c`; `Err` with why it
    /// waits instead.
    async fn start_new(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: i32,
        pause_id: &str,
        requeue: &mut Option<Duration>,
    ) -> Result<(), Waiting> {
        self.ensure_image(c, requeue).await?;
        let service_env = match &self.config.services {
            Some(s) => s.env_for(&pod.metadata.namespace).await,
            None => Vec::new(),
        };
        let spec = spec::app_spec(
            &self.config.node_name,
            pod,
            c,
            attempt,
            pause_id,
            &self.config.data_dir,
            &service_env,
        )
        .map_err(|SpecError(message)| Waiting {
            reason: "CreateContainerConfigError".into(),
            message,
        })?;
        // A container left over under this name (a create whose answer was
        // lost) is replaced.
        let _ = self.runtime.remove(&spec.name).await;
        let id = self.runtime.create(&spec).await.map_err(|e| Waiting {
            reason: "CreateContainerError".into(),
            message: e.to_string(),
        })?;
        tracing::info!(container = %c.name, attempt, id = %id, "starting container");
        match self.runtime.start(&id).await {
            Ok(()) => {
                let message = format!("Started container {}", c.name);
                self.event(pod, &c.name, EventType::Normal, "Started", &message)
                    .await;
            }
            Err(e) => {
                // Docker keeps the container with the error; its status
                // says it.
                tracing::warn!(container = %c.name, error = %e, "container did not start");
                let message = format!("Error: {e}");
                self.event(pod, &c.name, EventType::Warning, "Failed", &message)
                    .await;
            }
        }
        Ok(())
    }

    /// Brings the pause container up; returns it.
    async fn ensure_pause(
        &self,
        pod: &Pod,
        all: &[ContainerInfo],
    ) -> Result<ContainerInfo, SyncError> {
        if let Some(p) = all
            .iter()
            .find(|c| spec::role(c) == "pause" && c.is_running())
        {
            return Ok(p.clone());
        }
        // The pod's network namespace is gone with its pause container:
        // containers still running in it are useless.
        for c in all {
            if spec::role(c) == "app" && c.is_running() {
                tracing::info!(container = %spec::container_name(c), "removing a container whose pause container died");
                self.runtime.remove(&c.id).await?;
            }
        }
        for c in all.iter().filter(|c| spec::role(c) == "pause") {
            self.runtime.remove(&c.id).await?;
        }
        for dir in spec::empty_dirs(&self.config.data_dir, pod)
            .into_iter()
            .chain(spec::host_dirs_to_create(pod))
        {
            std::fs::create_dir_all(&dir)?;
        }
        let pause = spec::pause_spec(
            &self.config.node_name,
            &self.config.address,
            pod,
            &self.pause_image,
        );
        let _ = self.runtime.remove(&pause.name).await;
        let id = self.runtime.create(&pause).await?;
        self.runtime.start(&id).await?;
        tracing::info!(id = %id, "pause container started");
        Ok(self.runtime.inspect(&id).await?)
    }

    /// One reconcile of a pod not being deleted; returns when to look again
    /// at the latest, without any event.
    pub async fn reconcile(&mut self, sp: &StoredPod) -> Result<Option<Duration>, SyncError> {
        let pod = &sp.pod;
        let uid = pod.metadata.uid.clone();
        let mut all = self.list(&uid).await?;
        let terminal = status::is_terminal(pod.status.as_ref().and_then(|s| s.phase.as_deref()));
        let mut waiting: BTreeMap<String, Waiting> = BTreeMap::new();
        let mut requeue = None;
        if terminal {
            // A finished pod runs nothing, not even its pause container.
            for c in all.iter().filter(|c| c.is_running()) {
                let grace = if spec::role(c) == "pause" {
                    PAUSE_STOP_GRACE
                } else {
                    grace_period(pod)
                };
                self.runtime.stop(&c.id, grace).await?;
            }
        } else {
            let pause = match self.ensure_pause(pod, &all).await {
                Ok(pause) => pause,
                Err(e) => {
                    // The pod cannot start at all (a host port taken, a
                    // volume dir that cannot be made): say so, try again.
                    tracing::warn!(error = %e, "the pod's pause container did not start");
                    let message = format!("failed to create the pod's sandbox: {e}");
                    let waiting = pod
                        .spec
                        .containers
                        .iter()
                        .map(|c| {
                            let w = Waiting {
                                reason: "CreatePodSandboxError".into(),
                                message: message.clone(),
                            };
                            (c.name.clone(), w)
                        })
                        .collect();
                    let all = self.list(&uid).await?;
                    let mut view = view_of(pod, &all, waiting, &self.config.address);
                    view.pause = None;
                    self.write_status(sp, &view).await?;
                    return Ok(Some(SANDBOX_RETRY));
                }
            };
            if !all.iter().any(|c| c.id == pause.id) {
                // A new pause container: see what is left of the old one's.
                all = self.list(&uid).await?;
            }
            let mut changed = false;
            let policy = pod.spec.restart_policy.as_deref();
            let now = Time::now();
            for c in &pod.spec.containers {
                let mut mine: Vec<&ContainerInfo> = all
                    .iter()
                    .filter(|x| spec::role(x) == "app" && spec::container_name(x) == c.name)
                    .collect();
                mine.sort_by_key(|x| std::cmp::Reverse(spec::attempt(x)));
                let current = mine.first();
                let started = match current.map(|x| (&x.state, *x)) {
                    None => Some(
                        self.start_new(pod, c, next_attempt(&mine), &pause.id, &mut requeue)
                            .await,
                    ),
                    Some((ContainerState::Created, x)) => {
                        if let Err(e) = self.runtime.start(&x.id).await {
                            tracing::warn!(container = %c.name, error = %e, "container did not start");
                        }
                        Some(Ok(()))
                    }
                    Some((ContainerState::Running { .. }, _)) => None,
                    Some((
                        ContainerState::Exited {
                            exit_code,
                            started_at,
                            finished_at,
                            ..
                        },
                        x,
                    )) => {
                        if !status::should_restart(policy, *exit_code) {
                            None
                        } else {
                            let attempt = spec::attempt(x);
                            if status::ran_long(*started_at, *finished_at) {
                                self.backoff_base.insert(c.name.clone(), attempt);
                            }
                            let base = self.backoff_base.get(&c.name).copied().unwrap_or(0);
                            let delay = status::restart_delay(
                                u32::try_from(attempt - base).unwrap_or(0),
                                self.config.restart_backoff,
                                self.config.max_restart_backoff,
                            );
                            let since = finished_at.map_or(i64::MAX, |f| secs_between(f, now));
                            if since >= delay.as_secs() as i64 {
                                Some(
                                    self.start_new(pod, c, attempt + 1, &pause.id, &mut requeue)
                                        .await,
                                )
                            } else {
                                let left = Duration::from_secs(
                                    (delay.as_secs() as i64 - since).max(1) as u64,
                                );
                                requeue = Some(requeue.map_or(left, |r: Duration| r.min(left)));
                                waiting.insert(
                                    c.name.clone(),
                                    Waiting {
                                        reason: "CrashLoopBackOff".into(),
                                        message: format!(
                                            "back-off {}s restarting failed container={} pod={}_{}({uid})",
                                            delay.as_secs(),
                                            c.name,
                                            pod.metadata.name,
                                            pod.metadata.namespace
                                        ),
                                    },
                                );
                                None
                            }
                        }
                    }
                };
                match started {
                    Some(Ok(())) => changed = true,
                    Some(Err(w)) => {
                        waiting.insert(c.name.clone(), w);
                    }
                    None => {}
                }
            }
            if changed {
                all = self.list(&uid).await?;
            }
            // Containers no longer in the spec, and attempts before the
            // previous one.
            let mut removed = false;
            for x in &all {
                if spec::role(x) != "app" {
                    continue;
                }
                let name = spec::container_name(x);
                let newest = all
                    .iter()
                    .filter(|y| spec::role(y) == "app" && spec::container_name(y) == name)
                    .map(spec::attempt)
                    .max()
                    .unwrap_or(0);
                let in_spec = pod.spec.containers.iter().any(|c| c.name == name);
                if !in_spec || spec::attempt(x) < newest - 1 {
                    self.runtime.remove(&x.id).await?;
                    removed = true;
                }
            }
            if removed {
                all = self.list(&uid).await?;
            }
        }
        self.waiting_events(pod, &waiting).await;
        let view = view_of(pod, &all, waiting, &self.config.address);
        self.write_status(sp, &view).await?;
        Ok(requeue)
    }

    /// Writes the pod's status (and the host ports annotation) computed
    /// from `view`, if it differs from the stored one.
    async fn write_status(&self, sp: &StoredPod, view: &PodView) -> Result<(), SyncError> {
        let uid = sp.pod.metadata.uid.clone();
        let ports = view
            .pause
            .as_ref()
            .and_then(|p| status::host_ports(&sp.pod, p));
        let now = Time::now();
        let result = self
            .registry
            .update_with::<SyncError>(&sp.key, |current| {
                let fresh: Pod = serde_json::from_value(current.value.clone())?;
                if fresh.metadata.uid != uid {
                    return Ok(None);
                }
                let next: PodStatus = status::pod_status(&fresh, view, now);
                let ports_changed = ports.is_some()
                    && fresh.metadata.annotations.get(HOST_PORTS_ANNOTATION) != ports.as_ref();
                if fresh.status.as_ref() == Some(&next) && !ports_changed {
                    return Ok(None);
                }
                let mut value = current.value.clone();
                value["status"] = serde_json::to_value(&next)?;
                if let Some(ports) = &ports {
                    let meta = value["metadata"]
                        .as_object_mut()
                        .expect("a pod has metadata");
                    let annotations = meta
                        .entry("annotations")
                        .or_insert_with(|| Value::Object(Default::default()));
                    annotations[HOST_PORTS_ANNOTATION] = Value::String(ports.clone());
                }
                tracing::debug!(phase = ?next.phase, "writing pod status");
                Ok(Some(value))
            })
            .await;
        match result {
            Ok(_) | Err(SyncError::Registry(RegistryError::NotFound)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops the pod's containers (SIGTERM, then SIGKILL after the grace
    /// period), removes them and the pod's emptyDir volumes.
    pub async fn terminate(&mut self, pod: &Pod) -> Result<(), SyncError> {
        let uid = &pod.metadata.uid;
        let all = self.list(uid).await?;
        let grace = grace_period(pod);
        for c in all
            .iter()
            .filter(|c| spec::role(c) == "app" && c.is_running())
        {
            let name = spec::container_name(c);
            let message = format!("Stopping container {name}");
            self.event(pod, name, EventType::Normal, "Killing", &message)
                .await;
        }
        let apps = all
            .iter()
            .filter(|c| spec::role(c) != "pause" && c.is_running())
            .map(|c| self.runtime.stop(&c.id, grace));
        for r in futures_util::future::join_all(apps).await {
            r?;
        }
        for c in all.iter().filter(|c| spec::role(c) == "pause") {
            self.runtime.stop(&c.id, PAUSE_STOP_GRACE).await?;
        }
        for c in &all {
            self.runtime.remove(&c.id).await?;
        }
        let dir = spec::pod_dir(&self.config.data_dir, uid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(containers = all.len(), "pod's containers removed");
        Ok(())
    }

    /// Deletes the pod object once its containers are gone: a delete with
    /// a compare-and-swap on the pod still being this one (same uid,
    /// deletionTimestamp set, no finalizers left).
    pub async fn finalize(&self, sp: &StoredPod) -> Result<(), SyncError> {
        for _ in 0..MAX_FINALIZE_ATTEMPTS {
            let current = match self.registry.get(&sp.key).await {
                Ok(c) => c,
                Err(RegistryError::NotFound) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let pod: Pod = serde_json::from_value(current.value.clone())?;
            if pod.metadata.uid != sp.pod.metadata.uid || pod.metadata.deletion_timestamp.is_none()
            {
                return Ok(());
            }
            if !pod.metadata.finalizers.is_empty() {
                tracing::info!(finalizers = ?pod.metadata.finalizers, "pod stopped; finalizers hold it");
                return Ok(());
            }
            match self.registry.delete(&sp.key, current.mod_revision).await {
                Ok(_) | Err(RegistryError::NotFound) => {
                    tracing::info!("pod finalized");
                    return Ok(());
                }
                Err(RegistryError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Conflict.into())
    }
}

fn next_attempt(mine: &[&ContainerInfo]) -> i32 {
    mine.first().map_or(0, |x| spec::attempt(x) + 1)
}

/// The grace period of a pod's containers: the deletion's, else the
/// spec's, else 30 s.
fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .filter(|s| *s > 0)
        .or(pod.spec.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_PERIOD_S);
    Duration::from_secs(secs.max(0) as u64)
}

/// What the status is computed from.
fn view_of(
    pod: &Pod,
    all: &[ContainerInfo],
    mut waiting: BTreeMap<String, Waiting>,
    host_ip: &str,
) -> PodView {
    let pause = all.iter().find(|c| spec::role(c) == "pause").cloned();
    let mut containers = BTreeMap::new();
    for c in &pod.spec.containers {
        let mut mine: Vec<&ContainerInfo> = all
            .iter()
            .filter(|x| spec::role(x) == "app" && spec::container_name(x) == c.name)
            .collect();
        mine.sort_by_key(|x| std::cmp::Reverse(spec::attempt(x)));
        containers.insert(
            c.name.clone(),
            Observed {
                current: mine.first().map(|x| (*x).clone()),
                previous: mine.get(1).map(|x| (*x).clone()),
                waiting: waiting.remove(&c.name),
            },
        );
    }
    PodView {
        pause,
        containers,
        host_ip: host_ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policies() {
        let c = |image: &str| Container {
            image: Some(image.to_string()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36")), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/busybox")), "Always");
        let mut never = c("busybox");
        never.image_pull_policy = Some("Never".into());
        assert_eq!(pull_policy(&never), "Never");
    }

    #[test]
    fn grace_periods() {
        let mut pod = Pod::default();
        assert_eq!(grace_period(&pod), Duration::from_secs(30));
        pod.spec.termination_grace_period_seconds = Some(5);
        assert_eq!(grace_period(&pod), Duration::from_secs(5));
        pod.metadata.deletion_grace_period_seconds = Some(2);
        assert_eq!(grace_period(&pod), Duration::from_secs(2));
    }
}
