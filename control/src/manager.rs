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
use skiff_runtime::{
    Backoff, Cache, Election, EventRecorder, Informer, Registry, WorkQueue, run_workers,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::controllers::deployment::DeploymentController;
use crate::controllers::endpoints::EndpointsController;
use crate::controllers::gc::GarbageCollector;
use crate::controllers::nodes::{self, LEASE_PREFIX, NodeLifecycle};
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
    /// Node lifecycle timings.
    pub nodes: nodes::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            identity: format!("skiff-control-{}", std::process::id()),
            lease_ttl: Duration::from_secs(5),
            resync: Duration::from_secs(300),
            queue_limit: 100_000,
            nodes: nodes::Settings::default(),
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

/// Starts `run_workers` for a controller once every copy it reads is in.
fn spawn_workers<R: skiff_runtime::Reconcile>(
    tasks: &mut JoinSet<()>,
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<String>>,
    workers: usize,
    reads: Vec<Cache>,
    cancel: CancellationToken,
) {
    tasks.spawn(async move {
        // Decide nothing before the copies are in.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { for c in &reads { c.wait_synced().await } } => {}
        }
        tracing::info!(controller = reconciler.name(), "started");
        run_workers(reconciler, queue, workers, cancel).await;
    });
}

fn start_loops(registry: Registry, settings: &Settings, cancel: CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let informer =
        |resource: &str| Informer::new(registry.clone(), prefix(resource), settings.resync);
    let queue = || Arc::new(WorkQueue::new(settings.queue_limit, Backoff::default()));
    let mut pods = informer("pods");
    let mut nodes = informer("nodes");
    let mut replicasets = informer("replicasets");
    let mut rcs = informer("replicationcontrollers");
    let mut deployments = informer("deployments");
    let mut services = informer("services");
    let mut endpoints = informer("endpoints");

    let scheduler_queue = queue();
    let events = EventRecorder::new(registry.clone(), "default-scheduler", &settings.identity);
    let scheduler = Arc::new(Scheduler::new(
        registry.clone(),
        &mut pods,
        &mut nodes,
        events,
        scheduler_queue.clone(),
    ));
    // The scheduler binds one pod at a time, as Kubernetes' does.
    spawn_workers(
        &mut tasks,
        scheduler,
        scheduler_queue,
        1,
        vec![pods.cache(), nodes.cache()],
        cancel.clone(),
    );

    for (kind, owners) in [
        (OwnerKind::ReplicaSet, &mut replicasets),
        (OwnerKind::ReplicationController, &mut rcs),
    ] {
        let q = queue();
        ReplicaController::wire(kind, owners, &mut pods, &q);
        let controller = Arc::new(ReplicaController::new(
            kind,
            registry.clone(),
            owners.cache(),
            pods.cache(),
            EventRecorder::new(
                registry.clone(),
                match kind {
                    OwnerKind::ReplicaSet => "replicaset-controller",
                    OwnerKind::ReplicationController => "replication-controller",
                },
                &settings.identity,
            ),
        ));
        spawn_workers(
            &mut tasks,
            controller,
            q,
            CONTROLLER_WORKERS,
            vec![pods.cache(), owners.cache()],
            cancel.clone(),
        );
    }

    let deployment_queue = queue();
    DeploymentController::wire(&mut deployments, &mut replicasets, &deployment_queue);
    let deployment = Arc::new(DeploymentController::new(
        registry.clone(),
        EventRecorder::new(
            registry.clone(),
            "deployment-controller",
            &settings.identity,
        ),
        deployments.cache(),
        replicasets.cache(),
        pods.cache(),
    ));
    spawn_workers(
        &mut tasks,
        deployment,
        deployment_queue,
        CONTROLLER_WORKERS,
        vec![deployments.cache(), replicasets.cache(), pods.cache()],
        cancel.clone(),
    );

    let endpoints_queue = queue();
    EndpointsController::wire(&mut services, &mut endpoints, &mut pods, &endpoints_queue);
    let endpoints_controller = Arc::new(EndpointsController::new(
        registry.clone(),
        services.cache(),
        endpoints.cache(),
        pods.cache(),
    ));
    spawn_workers(
        &mut tasks,
        endpoints_controller,
        endpoints_queue,
        CONTROLLER_WORKERS,
        vec![services.cache(), endpoints.cache(), pods.cache()],
        cancel.clone(),
    );

    let mut leases = Informer::new(registry.clone(), LEASE_PREFIX, settings.resync);
    let nodes_queue = queue();
    NodeLifecycle::wire(&mut nodes, &mut leases, &nodes_queue);
    let lifecycle = Arc::new(NodeLifecycle::new(
        registry.clone(),
        nodes.cache(),
        leases.cache(),
        pods.cache(),
        EventRecorder::new(registry.clone(), "node-controller", &settings.identity),
        settings.nodes,
    ));
    spawn_workers(
        &mut tasks,
        lifecycle,
        nodes_queue,
        CONTROLLER_WORKERS,
        vec![nodes.cache(), leases.cache(), pods.cache()],
        cancel.clone(),
    );
    tasks.spawn(leases.run(cancel.clone()));

    let gc_queue = queue();
    let dependents = vec![pods.cache(), replicasets.cache()];
    GarbageCollector::watch_dependents(&mut pods, &gc_queue);
    GarbageCollector::watch_dependents(&mut replicasets, &gc_queue);
    for owners in [&mut replicasets, &mut rcs, &mut deployments] {
        GarbageCollector::watch_owners(owners, dependents.clone(), &gc_queue);
    }
    let gc = Arc::new(GarbageCollector::new(
        registry.clone(),
        vec![("pods", pods.cache()), ("replicasets", replicasets.cache())],
        vec![replicasets.cache(), rcs.cache(), deployments.cache()],
    ));
    let all = vec![
        pods.cache(),
        replicasets.cache(),
        rcs.cache(),
        deployments.cache(),
    ];
    spawn_workers(
        &mut tasks,
        gc,
        gc_queue,
        CONTROLLER_WORKERS,
        all,
        cancel.clone(),
    );

    for i in [
        pods,
        nodes,
        replicasets,
        rcs,
        deployments,
        services,
        endpoints,
    ] {
        tasks.spawn(i.run(cancel.clone()));
    }
    tasks
}
