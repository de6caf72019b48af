//! The node proxy: every Service's node ports, on this node, forwarded to
//! the Service's ready endpoints.
//!
//! Informers keep copies of the Services and the Endpoints objects; every
//! change of either (and a retry tick while a listener could not be
//! opened) recomputes the routes ([`table::routes`], pure) and makes the
//! listeners match:
//!
//! - a node port with ready endpoints has a listener on `--proxy-address`,
//!   and one on the shared address (the Docker bridge's gateway, where
//!   containers reach the node) opened with `SO_REUSEPORT`, so that several
//!   agents on one machine all serve it;
//! - a node port whose Service has no ready endpoint has no listener: a
//!   client's connection is refused at once, as kube-proxy's REJECT rule
//!   does;
//! - a node port whose Service went has its listeners closed.
//!
//! Each accepted connection goes to the endpoint whose turn it is (round
//! robin per node port); a connect that fails or times out tries the next
//! endpoint, each at most once. Then bytes are spliced both ways
//! ([`splice`], without passing through the proxy's memory) until either
//! side closes. Endpoints changes take effect for new connections
//! only: a connection in flight keeps its endpoint. Connections per
//! listener are capped ([`ProxyConfig::max_connections`]); one over the cap
//! is closed at once.
//!
//! [`env`] gives the service environment variables of new containers.

pub mod env;
pub mod splice;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use skiff_runtime::{Cache, Informer, Registry};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Where Services live in the store.
pub const SERVICES_PREFIX: &str = "/registry/services/specs/";
/// Where Endpoints objects live in the store.
pub const ENDPOINTS_PREFIX: &str = "/registry/services/endpoints/";
/// Connections waiting to be accepted, per listener.
const LISTEN_BACKLOG: u32 = 1024;
/// Pause before opening again a listener that could not be opened, and
/// after an accept error (out of file descriptors).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The most endpoints one connection tries.
const MAX_CONNECT_ATTEMPTS: usize = 16;

/// What the proxy is told at start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name: its pods are reached at their own IPs.
    pub node_name: String,
    /// `--proxy-address`: where node ports listen.
    pub address: IpAddr,
    /// An address shared with other agents of the machine (the Docker
    /// bridge's gateway), where node ports also listen, with
    /// `SO_REUSEPORT`; containers reach the proxy there.
    pub shared_address: Option<IpAddr>,
    /// The most connections in flight per listener.
    pub max_connections: usize,
    /// Bound on connecting to one endpoint.
    pub connect_timeout: Duration,
    /// How often the informers hand every object over again.
    pub resync: Duration,
}

impl ProxyConfig {
    /// The address containers reach the proxy at, for their environment.
    pub fn container_address(&self) -> IpAddr {
        self.shared_address.unwrap_or(self.address)
    }
}

/// The endpoints of one node port, shared by its listeners and their
/// connections, and swapped whole when they change.
#[derive(Debug)]
struct Backends {
    service: String,
    node_port: u16,
    addrs: RwLock<Arc<Vec<SocketAddr>>>,
    /// The round robin counter.
    next: AtomicUsize,
}

impl Backends {
    fn current(&self) -> Arc<Vec<SocketAddr>> {
        self.addrs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, addrs: Vec<SocketAddr>) {
        let mut cur = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        if **cur != addrs {
            *cur = Arc::new(addrs);
        }
    }
}

/// One open listener.
struct Listening {
    cancel: CancellationToken,
}

/// The proxy's state between two syncs.
struct Proxy {
    config: ProxyConfig,
    shutdown: CancellationToken,
    backends: HashMap<u16, Arc<Backends>>,
    listeners: HashMap<SocketAddr, Listening>,
}

/// The caches the proxy reads, for the agent's other parts (the service
/// environment of new containers).
#[derive(Debug, Clone)]
pub struct ServiceCaches {
    pub services: Cache,
    /// The address of the proxy that containers reach.
    pub host: String,
}

impl ServiceCaches {
    /// The service variables of a new container of a pod in `namespace`.
    /// Waits a bounded time for the first list of Services.
    pub async fn env_for(&self, namespace: &str) -> Vec<(String, String)> {
        const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);
        if tokio::time::timeout(FIRST_LIST_WAIT, self.services.wait_synced())
            .await
            .is_err()
        {
            tracing::warn!("services not listed yet: starting a container without their variables");
        }
        let services = self.services.list();
        env::service_env(services.iter().map(|s| &**s), namespace, &self.host)
    }
}

/// The informers of the proxy, made before the proxy runs so that their
/// caches can be handed to the rest of the agent.
pub struct Watches {
    services: Informer,
    endpoints: Informer,
}

impl Watches {
    pub fn new(registry: Registry, resync: Duration) -> Self {
        Watches {
            services: Informer::new(registry.clone(), SERVICES_PREFIX, resync),
            endpoints: Informer::new(registry, ENDPOINTS_PREFIX, resync),
        }
    }

    pub fn services(&self) -> Cache {
        self.services.cache()
    }
}

/// Runs the proxy until `shutdown`.
pub async fn run(watches: Watches, config: ProxyConfig, shutdown: CancellationToken) {
    let Watches {
        mut services,
        mut endpoints,
    } = watches;
    let changed = Arc::new(Notify::new());
    for informer in [&mut services, &mut endpoints] {
        let changed = changed.clone();
        informer.on_change(move |_| changed.notify_one());
    }
    let (service_cache, endpoint_cache) = (services.cache(), endpoints.cache());
    let informers = [
        tokio::spawn(services.run(shutdown.clone())),
        tokio::spawn(endpoints.run(shutdown.clone())),
    ];
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async { service_cache.wait_synced().await; endpoint_cache.wait_synced().await } => {
            tracing::info!(
                address = %config.address,
                shared_address = ?config.shared_address,
                "proxy started"
            );
            let mut proxy = Proxy {
                config,
                shutdown: shutdown.clone(),
                backends: HashMap::new(),
                listeners: HashMap::new(),
            };
            loop {
                let services = service_cache.list();
                let endpoints = endpoint_cache.list();
                let routes = table::routes(
                    services.iter().map(|v| &**v),
                    endpoints.iter().map(|v| &**v),
                    &proxy.config.node_name,
                );
                let complete = proxy.sync(routes).await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = changed.notified() => {}
                    _ = tokio::time::sleep(RETRY_PAUSE), if !complete => {}
                }
            }
            for (_, l) in proxy.listeners.drain() {
                l.cancel.cancel();
            }
        }
    }
    for task in informers {
        let _ = task.await;
    }
    tracing::info!("proxy stopped");
}

/// Opens a listener; with `shared`, other sockets (other agents) may
/// listen on the same address and port.
fn listen(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Proxy {
    /// Makes the listeners match `routes`; `false` if one could not be
    /// opened (the caller tries again after a pause).
    async fn sync(&mut self, routes: BTreeMap<u16, table::Route>) -> bool {
        let mut complete = true;
        let mut wanted: Vec<(SocketAddr, bool, u16)> = Vec::new();
        self.backends.retain(|port, _| routes.contains_key(port));
        for (&node_port, route) in &routes {
            let backends = self
                .backends
                .entry(node_port)
                .or_insert_with(|| {
                    Arc::new(Backends {
                        service: route.service.clone(),
                        node_port,
                        addrs: RwLock::new(Arc::new(Vec::new())),
                        next: AtomicUsize::new(0),
                    })
                })
                .clone();
            if backends.service != route.service {
                // The node port moved to another service: start afresh.
                self.backends.remove(&node_port);
                for addr in self.addresses(node_port) {
                    if let Some(l) = self.listeners.remove(&addr.0) {
                        l.cancel.cancel();
                    }
                }
                complete = false;
                continue;
            }
            backends.set(route.backends.clone());
            if route.backends.is_empty() {
                continue;
            }
            for (addr, shared) in self.addresses(node_port) {
                wanted.push((addr, shared, node_port));
            }
        }
        let keep: std::collections::HashSet<SocketAddr> = wanted.iter().map(|w| w.0).collect();
        self.listeners.retain(|addr, l| {
            let kept = keep.contains(addr);
            if !kept {
                tracing::info!(%addr, "closing a node port listener");
                l.cancel.cancel();
            }
            kept
        });
        for (addr, shared, node_port) in wanted {
            if self.listeners.contains_key(&addr) {
                continue;
            }
            let backends = self.backends[&node_port].clone();
            match listen(addr, shared) {
                Ok(listener) => {
                    tracing::info!(%addr, service = %backends.service, "listening on a node port");
                    let cancel = self.shutdown.child_token();
                    let span = tracing::info_span!(
                        "node_port",
                        service = %backends.service,
                        node_port = backends.node_port,
                        listen = %addr
                    );
                    tokio::spawn(
                        serve(
                            listener,
                            backends,
                            self.config.clone(),
                            cancel.clone(),
                            self.shutdown.clone(),
                        )
                        .instrument(span),
                    );
                    self.listeners.insert(addr, Listening { cancel });
                }
                Err(e) => {
                    tracing::warn!(%addr, service = %backends.service, error = %e,
                        "cannot listen on a node port; trying again");
                    complete = false;
                }
            }
        }
        complete
    }

    /// Where node port `port` listens, and whether the address is shared.
    fn addresses(&self, port: u16) -> Vec<(SocketAddr, bool)> {
        let mut out = vec![(SocketAddr::new(self.config.address, port), false)];
        if let Some(shared) = self
            .config
            .shared_address
            .filter(|a| *a != self.config.address)
        {
            out.push((SocketAddr::new(shared, port), true));
        }
        out
    }
}

/// Accepts connections on one listener until `cancel`.
async fn serve(
    listener: TcpListener,
    backends: Arc<Backends>,
    config: ProxyConfig,
    cancel: CancellationToken,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (client, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_PAUSE) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, limit = config.max_connections,
                "connection limit reached, closing the connection");
            continue;
        };
        let backends = backends.clone();
        let shutdown = shutdown.clone();
        let timeout = config.connect_timeout;
        tokio::spawn(
            async move {
                forward(client, &backends, timeout, &shutdown).await;
                drop(permit);
            }
            .instrument(tracing::debug_span!("connection", client = %peer)),
        );
    }
}

/// Connects to the endpoint whose turn it is, or the next ones, and copies
/// bytes both ways until either side closes.
async fn forward(
    client: TcpStream,
    backends: &Backends,
    connect_timeout: Duration,
    shutdown: &CancellationToken,
) {
    let addrs = backends.current();
    let counter = backends.next.fetch_add(1, Ordering::Relaxed);
    let mut upstream = None;
    for i in table::try_order(addrs.len(), counter).take(MAX_CONNECT_ATTEMPTS) {
        let backend = addrs[i];
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend)).await {
            Ok(Ok(stream)) => {
                upstream = Some((backend, stream));
                break;
            }
            Ok(Err(e)) => {
                tracing::info!(%backend, error = %e, "endpoint refused, trying the next one");
            }
            Err(_) => {
                tracing::info!(%backend, timeout_ms = connect_timeout.as_millis() as u64,
                    "endpoint did not answer, trying the next one");
            }
        }
    }
    let Some((backend, upstream)) = upstream else {
        tracing::warn!(
            service = %backends.service,
            endpoints = addrs.len(),
            "no endpoint accepted the connection"
        );
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        r = splice::both_ways(&client, &upstream) => {
            match r {
                Ok((up, down)) => tracing::debug!(%backend, bytes_up = up, bytes_down = down, "connection closed"),
                Err(e) => tracing::debug!(%backend, error = %e, "connection ended with an error"),
            }
        }
    }
}
