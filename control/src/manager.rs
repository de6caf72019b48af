//! The control loops of one skiff-control instance, run only while it
//! holds the leadership.
//!
//! Every instance campaigns for [`LEADER_KEY`]. The winner starts the
//! informers, the scheduler and the controllers with a registry fenced by
//! its election key, so that if it is deposed (its lease lapsed while it was
//! paused or cut off), its writes fail in the store rather than race the new
//! leader's. When the leadership is lost the loops stop, and the instance
//! campaigns again; on shutdown it resigns, so that another instance takes
//! over at once instead of after the lease TTL.

use std::sync::Arc;
use std::time::Duration;

use skiff_client::Client;
use skiff_model::resources;
use skiff_runtime::{Backoff, Election, EventRecorder, Informer, Registry, WorkQueue, run_workers};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::controllers::replicas::{OwnerKind, ReplicaController};
use crate::scheduler::Scheduler;

/// Workers of each controller (the scheduler has one).
const CONTROLLER_WORKERS: usize = 4;

/// The election key; outside `/registry/` so that no API lists it.
pub const LEADER_KEY: &str = "/skiff/leader/control";

/// Settings of the control loops.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This instance, as the election key shows it.
    pub identity: String,
    /// The leader lease TTL: how soon another instance takes over from a
    /// dead leader.
    pub lease_ttl: Duration,
    /// How often every object is reconciled again without a change.
    pub resync: Duration,
    /// The most keys a work queue holds.
    pub queue_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            identity: format!("skiff-control-{}", std::process::id()),
            lease_ttl: Duration::from_secs(5),
            resync: Duration::from_secs(300),
            queue_limit: 100_000,
        }
    }
}

fn prefix(resource: &str) -> String {
    resources::lookup(resource)
        .expect("a known resource")
        .prefix(None)
}

/// Campaigns, runs the loops while leading, and campaigns again after a
/// loss, until `shutdown`.
pub async fn run(client: Client, settings: Settings, shutdown: CancellationToken) {
    let election = Election::new(
        client.clone(),
        LEADER_KEY,
        settings.identity.clone(),
        settings.lease_ttl,
    );
    while let Some(leadership) = election.campaign(&shutdown).await {
        let lost = leadership.lost();
        let running = CancellationToken::new();
        let registry = Registry::new(client.clone()).fenced(leadership.fence.clone());
        let mut loops = start_loops(registry, &settings, running.clone());
        tokio::select! {
            _ = shutdown.cancelled() => {
                running.cancel();
                while loops.join_next().await.is_some() {}
                leadership.resign().await;
                tracing::info!("resigned the leadership");
                return;
            }
            _ = lost.cancelled() => {
                tracing::warn!("leadership lost, stopping the control loops");
                running.cancel();
                while loops.join_next().await.is_some() {}
            }
        }
    }
}

fn start_loops(registry: Registry, settings: &Settings, cancel: CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let mut pods = Informer::new(registry.clone(), prefix("pods"), settings.resync);
    let mut nodes = Informer::new(registry.clone(), prefix("nodes"), settings.resync);
    let events = EventRecorder::new(registry.clone(), "default-scheduler", &settings.identity);

    let scheduler_queue = Arc::new(WorkQueue::new(settings.queue_limit, Backoff::default()));
    Scheduler::wire(&mut pods, &mut nodes, &scheduler_queue);
    let scheduler = Arc::new(Scheduler::new(
        registry.clone(),
        pods.cache(),
        nodes.cache(),
        events,
    ));
    let mut replica_loops = Vec::new();
    for (kind, resource) in [
        (OwnerKind::ReplicaSet, "replicasets"),
        (OwnerKind::ReplicationController, "replicationcontrollers"),
    ] {
        let mut owners = Informer::new(registry.clone(), prefix(resource), settings.resync);
        let queue = Arc::new(WorkQueue::new(settings.queue_limit, Backoff::default()));
        ReplicaController::wire(kind, &mut owners, &mut pods, &queue);
        let controller = Arc::new(ReplicaController::new(
            kind,
            registry.clone(),
            owners.cache(),
            pods.cache(),
        ));
        replica_loops.push((owners.cache(), controller, queue));
        tasks.spawn(owners.run(cancel.clone()));
    }
    let (pods_cache, nodes_cache) = (pods.cache(), nodes.cache());
    tasks.spawn(pods.run(cancel.clone()));
    tasks.spawn(nodes.run(cancel.clone()));
    for (owners_cache, controller, queue) in replica_loops {
        let (cancel, pods_cache) = (cancel.clone(), pods_cache.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = async { pods_cache.wait_synced().await; owners_cache.wait_synced().await } => {}
            }
            run_workers(controller, queue, CONTROLLER_WORKERS, cancel).await;
        });
    }
    tasks.spawn(async move {
        // Decide nothing before both copies are in.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { pods_cache.wait_synced().await; nodes_cache.wait_synced().await } => {}
        }
        tracing::info!(
            pods = pods_cache.len(),
            nodes = nodes_cache.len(),
            "control loops started"
        );
        // The scheduler binds one pod at a time, as Kubernetes' does.
        run_workers(scheduler, scheduler_queue, 1, cancel).await;
    });
    tasks
}
