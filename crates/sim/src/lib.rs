//! meshfleet's simulator: a Kubernetes API server (HTTPS, bearer tokens, discovery, CRUD, watch,
//! patch, server-side apply) with simulated Cluster API, Talos, CAAPH and Cilium controllers.
//!
//! The simulator knows nothing of meshfleet's planner or renderer: like real controllers, it
//! reacts only to the objects applied to it. Layout: [`store`] keeps objects and broadcasts
//! changes, [`http`] speaks the Kubernetes REST protocol, [`controllers`] reconcile what the
//! store holds, [`workload`] gives each simulated cluster its own API under
//! `/workload/<namespace>/<name>` on the same listener. [`gcp`] fakes the Google Cloud APIs
//! `meshfleet gcp setup` calls on a second, plain-HTTP listener; the simulated CAPG reads its state
//! and creates its firewall rules there. [`aws`] fakes the AWS APIs `meshfleet aws setup` calls on
//! a third; [`aws::Aws::capa_missing`] says why the simulated CAPA cannot launch a machine.
//! [`talos`] reads TalosConfig patches as CABPT and Talos do, [`ccm`] models the cloud controller
//! managers that give Nodes their provider IDs.

#![warn(missing_docs)]
// Selector and firewall predicates read closer to their specs unsimplified.
#![allow(clippy::nonminimal_bool)]

pub mod aws;
pub mod caaph;
pub mod ccm;
pub mod controllers;
pub mod echo;
pub mod gcp;
pub mod http;
pub mod mesh;
pub mod network;
pub mod outage;
pub mod patch;
pub mod proto;
pub mod psa;
pub mod resources;
pub mod select;
pub mod store;
pub mod table;
pub mod talos;
pub mod tls;
pub mod validate;
pub mod workload;
pub mod workloads;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resources::Registry;
use store::Store;
use tls::Identity;

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where to write the management kubeconfig once ready.
    pub kubeconfig: PathBuf,
    /// Simulated-time factor: 10 makes every delay ten times shorter.
    pub speed: f64,
    /// The management cluster's egress address; when set, Talos bootstrap needs tcp/50000 open
    /// from it.
    pub egress_ip: Option<IpAddr>,
    /// Persist objects here (memory only when absent).
    pub state_dir: Option<PathBuf>,
    /// Load CustomResourceDefinitions (schemas, extra versions) from here, recursively.
    pub crds_dir: Option<PathBuf>,
    /// Probability of an injected fault per request (0 disables).
    pub faults: f64,
    /// Address of the plain-HTTP Google Cloud API fake (`127.0.0.1:0` picks a free port).
    pub gcp_listen: SocketAddr,
    /// Address of the plain-HTTP AWS API fake (`127.0.0.1:0` picks a free port).
    pub aws_listen: SocketAddr,
    /// Node networks are separate ([`network`]): a GCP network and AWS VPCs reach each other
    /// only through links that exist in the cloud fakes (the default, as on real clouds).
    /// Off: every network reaches every other (the behaviour before the model existed).
    pub separate_networks: bool,
}

impl SimConfig {
    /// Defaults: speed 1, no egress check, memory only, no CRD files, no faults, separate
    /// node networks.
    pub fn new(listen: SocketAddr, kubeconfig: PathBuf) -> Self {
        Self {
            listen,
            kubeconfig,
            speed: 1.0,
            egress_ip: None,
            state_dir: None,
            crds_dir: None,
            faults: 0.0,
            gcp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            aws_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            separate_networks: true,
        }
    }
}

/// Errors starting or stopping the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or serving failed.
    #[error("cannot listen on `{addr}`: {source}; hint: pick another address or use port 0")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The CRD directory could not be loaded.
    #[error(transparent)]
    Crds(#[from] resources::CrdError),
    /// State could not be loaded or saved.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Certificates could not be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The kubeconfig could not be written.
    #[error("cannot write kubeconfig `{path}`: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Invalid configuration.
    #[error("{0}")]
    Config(String),
    /// The saved GCP state could not be loaded.
    #[error(transparent)]
    Gcp(#[from] gcp::GcpError),
    /// The saved AWS state could not be loaded.
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    /// The endpoints file could not be written.
    #[error("cannot write `{path}`: {source}")]
    Endpoints {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One API surface: the management cluster or one workload cluster.
pub struct Api {
    /// `management` or `<namespace>/<name>`.
    pub name: String,
    /// Its objects.
    pub store: Arc<Store>,
    /// Its kinds.
    pub registry: Arc<Registry>,
    /// The bearer token it accepts.
    pub token: String,
}

/// Everything the server and the controllers share.
pub struct World {
    /// Configuration.
    pub cfg: SimConfig,
    /// The management API.
    pub management: Arc<Api>,
    workloads: Mutex<BTreeMap<String, Arc<Api>>>,
    identity: Mutex<Identity>,
    /// Each workload cluster's ClusterMesh links as its Cilium agents see them.
    pub(crate) mesh: Mutex<BTreeMap<String, mesh::Links>>,
    /// What the last mesh pass computed the links from ([`mesh::Inputs`]).
    pub(crate) mesh_inputs: Mutex<mesh::Inputs>,
    /// Mesh-link history for Cilium's cache TTL ([`workloads`]).
    pub(crate) links: Mutex<workloads::LinkMemory>,
    /// The bound address.
    pub addr: SocketAddr,
    /// The Google Cloud API fake.
    pub gcp: Arc<gcp::Gcp>,
    /// The AWS API fake.
    pub aws: Arc<aws::Aws>,
    /// Interconnect outages ([`network::set_outage`]).
    pub(crate) outages: network::Outages,
    /// Since when each workload cluster has been down, as Cluster API's probe sees it
    /// ([`outage::Probes`]).
    pub(crate) probes: Mutex<outage::Probes>,
    /// Each workload API server's Pod Security admission configuration ([`psa::configure`]).
    pub(crate) pod_security: Mutex<BTreeMap<String, serde_json::Value>>,
    /// Requests served by the Kubernetes APIs, by API and kind of request.
    requests: Mutex<BTreeMap<String, u64>>,
    /// The simulated CAAPH's parsed release values ([`caaph::ValuesCache`]).
    pub(crate) caaph: Mutex<caaph::ValuesCache>,
}

impl World {
    /// Count one request to `api` (`management` or a workload cluster) of kind `what`.
    pub(crate) fn count_request(&self, api: &str, what: &str) {
        let scope = if api == "management" {
            "management"
        } else {
            "workload"
        };
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(format!("{scope} {what}")).or_default() += 1;
    }

    /// The requests the Kubernetes APIs have served since start, by `"<management|workload>
    /// <verb>"` (verbs: `list`, `get`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `proxy`, `other`): what a benchmark of `up` reports per cluster.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `http://127.0.0.1:PORT` of the Google Cloud API fake.
    pub fn gcp_url(&self) -> &str {
        self.gcp.url()
    }

    fn identity_path(&self) -> Option<PathBuf> {
        self.cfg.state_dir.as_ref().map(|d| d.join("identity.json"))
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> String {
        self.lock_identity().ca_cert_pem.clone()
    }

    fn lock_identity(&self) -> std::sync::MutexGuard<'_, Identity> {
        self.identity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issue a client certificate (PEM certificate, PEM key) the management API accepts.
    pub fn issue_client_cert(&self, name: &str) -> Result<(String, String), SimError> {
        Ok(self.lock_identity().issue_client_cert(name)?)
    }

    /// `https://host:port` of this simulator.
    pub fn server_url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            match self.addr.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            }
        };
        format!("https://{host}:{}", self.addr.port())
    }

    /// A kubeconfig for a workload cluster.
    pub fn workload_kubeconfig(&self, key: &str, token: &str) -> String {
        let name = key.replace('/', "-");
        let url = format!("{}/workload/{key}", self.server_url());
        self.lock_identity()
            .kubeconfig(&name, &url, token, "default")
    }

    /// Scale a simulated duration by `--speed`.
    pub fn scaled(&self, d: Duration) -> Duration {
        let s = if self.cfg.speed > 0.0 {
            self.cfg.speed
        } else {
            1.0
        };
        d.div_f64(s)
    }

    /// The workload API of `<namespace>/<name>`, when it runs.
    pub fn workload(&self, key: &str) -> Option<Arc<Api>> {
        self.workloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The mesh links of workload cluster `<namespace>/<name>` as its Cilium agents see them,
    /// with the simulator's own reason for each one that is down (never served to clients).
    pub fn mesh_links(&self, key: &str) -> Option<mesh::Links> {
        self.mesh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Every running workload API.
    pub fn workloads(&self) -> Vec<Arc<Api>> {
        self.workloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Start (or return) the workload API of `<namespace>/<name>`.
    pub fn ensure_workload(&self, key: &str) -> Result<Arc<Api>, SimError> {
        if let Some(a) = self.workload(key) {
            return Ok(a);
        }
        let token = {
            let mut id = self.lock_identity();
            let t = id
                .workload_tokens
                .entry(key.to_string())
                .or_insert_with(tls::random_token)
                .clone();
            id.save(self.identity_path().as_deref())?;
            t
        };
        let path = self.cfg.state_dir.as_ref().map(|d| {
            d.join("workloads")
                .join(format!("{}.json", key.replace('/', "__")))
        });
        let store = Arc::new(Store::open(path)?);
        let api = Arc::new(Api {
            name: key.to_string(),
            store,
            registry: Arc::new(Registry::workload()),
            token,
        });
        workload::seed(&api)?;
        let mut w = self.workloads.lock().unwrap_or_else(|e| e.into_inner());
        Ok(w.entry(key.to_string()).or_insert(api).clone())
    }

    /// Stop the workload API of `<namespace>/<name>` and forget its objects.
    pub fn remove_workload(&self, key: &str) {
        let removed = self
            .workloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if removed.is_some()
            && let Some(d) = &self.cfg.state_dir
        {
            let _ = std::fs::remove_file(
                d.join("workloads")
                    .join(format!("{}.json", key.replace('/', "__"))),
            );
        }
        let mut id = self.lock_identity();
        if id.workload_tokens.remove(key).is_some() {
            let _ = id.save(self.identity_path().as_deref());
        }
    }

    /// Save every store (no-op without `--state`).
    pub fn flush(&self) -> Result<(), SimError> {
        self.management.store.flush()?;
        if let Err(source) = self.aws.flush() {
            return Err(SimError::Store(store::StoreError::Io {
                path: self
                    .cfg
                    .state_dir
                    .as_ref()
                    .map(|d| d.join("aws.json"))
                    .unwrap_or_default(),
                source,
            }));
        }
        if let Err(source) = self.gcp.flush() {
            return Err(SimError::Store(store::StoreError::Io {
                path: self
                    .cfg
                    .state_dir
                    .as_ref()
                    .map(|d| d.join("gcp.json"))
                    .unwrap_or_default(),
                source,
            }));
        }
        for w in self.workloads() {
            w.store.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl World {
    /// A world with no listener and no controllers running, for unit tests that drive the
    /// reconcilers themselves.
    pub(crate) fn for_tests(speed: f64) -> Arc<Self> {
        let mut cfg = SimConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            PathBuf::from("unused"),
        );
        cfg.speed = speed;
        let identity = Identity::load_or_generate(None).expect("identity");
        let management = Arc::new(Api {
            name: "management".into(),
            store: Arc::new(Store::open(None).expect("store")),
            registry: Arc::new(Registry::management()),
            token: identity.token.clone(),
        });
        Arc::new(World {
            cfg,
            management,
            workloads: Mutex::new(BTreeMap::new()),
            identity: Mutex::new(identity),
            mesh: Mutex::new(BTreeMap::new()),
            mesh_inputs: Mutex::new(mesh::Inputs::default()),
            links: Mutex::new(workloads::LinkMemory::default()),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gcp: Arc::new(
                gcp::Gcp::open(None, "http://127.0.0.1:1".into(), speed, 0.0).expect("gcp"),
            ),
            aws: Arc::new(aws::Aws::open(None, "http://127.0.0.1:1".into(), speed).expect("aws")),
            outages: network::Outages::default(),
            probes: Mutex::new(outage::Probes::default()),
            pod_security: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(BTreeMap::new()),
            caaph: Mutex::new(caaph::ValuesCache::default()),
        })
    }
}

/// A running simulator.
pub struct Simulator {
    world: Arc<World>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.world.addr
    }

    /// `http://127.0.0.1:PORT` of the Google Cloud API fake.
    pub fn gcp_url(&self) -> &str {
        self.world.gcp_url()
    }

    /// `http://127.0.0.1:PORT` of the AWS API fake.
    pub fn aws_url(&self) -> &str {
        self.world.aws.url()
    }

    /// Shared state (for in-process tests and tools).
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// Stop serving, stop the controllers and save state.
    pub async fn shutdown(self) -> Result<(), SimError> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        self.world.flush()
    }
}

/// Start the simulator: load state and CRDs, bind, write the kubeconfig, start controllers.
pub async fn start(cfg: SimConfig) -> Result<Simulator, SimError> {
    if !(0.0..=1.0).contains(&cfg.faults) {
        return Err(SimError::Config(format!(
            "fault rate `{}` is out of range; hint: use a probability between 0 and 1",
            cfg.faults
        )));
    }
    if cfg.speed.is_nan() || cfg.speed <= 0.0 {
        return Err(SimError::Config(format!(
            "speed `{}` must be a positive number; hint: 1 is real time, 10 is ten times faster",
            cfg.speed
        )));
    }
    let mut registry = Registry::management();
    if let Some(dir) = &cfg.crds_dir {
        registry.load_crds(dir)?;
    }
    if let Some(d) = &cfg.state_dir {
        std::fs::create_dir_all(d).map_err(|source| {
            SimError::Store(store::StoreError::Io {
                path: d.clone(),
                source,
            })
        })?;
    }
    let identity = Identity::load_or_generate(
        cfg.state_dir
            .as_ref()
            .map(|d| d.join("identity.json"))
            .as_deref(),
    )?;
    let store = Arc::new(Store::open(
        cfg.state_dir.as_ref().map(|d| d.join("management.json")),
    )?);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| SimError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let tls_cfg = identity.server_config(addr)?;
    let gcp_listener = tokio::net::TcpListener::bind(cfg.gcp_listen)
        .await
        .map_err(|source| SimError::Listen {
            addr: cfg.gcp_listen,
            source,
        })?;
    let gcp_addr = gcp_listener
        .local_addr()
        .map_err(|source| SimError::Listen {
            addr: cfg.gcp_listen,
            source,
        })?;
    let gcp_host = match gcp_addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let gcp = Arc::new(gcp::Gcp::open(
        cfg.state_dir.as_ref().map(|d| d.join("gcp.json")),
        format!("http://{gcp_host}:{}", gcp_addr.port()),
        cfg.speed,
        cfg.faults,
    )?);
    let aws_listener = tokio::net::TcpListener::bind(cfg.aws_listen)
        .await
        .map_err(|source| SimError::Listen {
            addr: cfg.aws_listen,
            source,
        })?;
    let aws_addr = aws_listener
        .local_addr()
        .map_err(|source| SimError::Listen {
            addr: cfg.aws_listen,
            source,
        })?;
    let aws_host = match aws_addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let aws = Arc::new(aws::Aws::open(
        cfg.state_dir.as_ref().map(|d| d.join("aws.json")),
        format!("http://{aws_host}:{}", aws_addr.port()),
        cfg.speed,
    )?);
    let management = Arc::new(Api {
        name: "management".into(),
        store,
        registry: Arc::new(registry),
        token: identity.token.clone(),
    });
    let world = Arc::new(World {
        cfg,
        management,
        workloads: Mutex::new(BTreeMap::new()),
        identity: Mutex::new(identity),
        mesh: Mutex::new(BTreeMap::new()),
        mesh_inputs: Mutex::new(mesh::Inputs::default()),
        links: Mutex::new(workloads::LinkMemory::default()),
        addr,
        gcp,
        aws,
        outages: network::Outages::default(),
        probes: Mutex::new(outage::Probes::default()),
        pod_security: Mutex::new(BTreeMap::new()),
        requests: Mutex::new(BTreeMap::new()),
        caaph: Mutex::new(caaph::ValuesCache::default()),
    });
    workload::seed_management(&world.management)?;
    // Workload clusters that existed before a restart come back with their objects.
    let keys: Vec<String> = world
        .lock_identity()
        .workload_tokens
        .keys()
        .cloned()
        .collect();
    for k in &keys {
        world.ensure_workload(k)?;
    }
    controllers::refresh_workload_kubeconfigs(&world, &keys);
    let timers = if keys.is_empty() {
        controllers::Timers::default()
    } else {
        controllers::first_pass(&world).await
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(http::serve(
        world.clone(),
        listener,
        tls_cfg,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(gcp::serve(
        world.gcp.clone(),
        gcp_listener,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(controllers::run(
        world.clone(),
        stop_rx.clone(),
        timers,
    )));
    if world.cfg.state_dir.is_some() {
        let w = world.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Err(e) = w.flush() {
                    tracing::warn!("saving state: {e}");
                }
            }
        }));
    }
    tasks.push(tokio::spawn(aws::serve(
        world.aws.clone(),
        aws_listener,
        stop_rx.clone(),
    )));
    let kubeconfig = {
        let id = world.lock_identity();
        id.kubeconfig("meshfleet-sim", &world.server_url(), &id.token, "default")
    };
    // Written before the kubeconfig: clients that wait for the kubeconfig find both.
    let endpoints = endpoints_path(&world.cfg.kubeconfig);
    let body = serde_json::to_vec_pretty(
        &serde_json::json!({"gcp": world.gcp_url(), "aws": world.aws.url()}),
    )
    .unwrap_or_default();
    store::write_atomic(&endpoints, &body).map_err(|source| SimError::Endpoints {
        path: endpoints.clone(),
        source,
    })?;
    store::write_atomic(&world.cfg.kubeconfig, kubeconfig.as_bytes()).map_err(|source| {
        SimError::Kubeconfig {
            path: world.cfg.kubeconfig.clone(),
            source,
        }
    })?;
    Ok(Simulator { world, stop, tasks })
}

/// `<kubeconfig>.endpoints.json`: where the simulator's cloud API fakes listen
/// (`{"gcp": "http://127.0.0.1:PORT", "aws": "http://127.0.0.1:PORT"}`).
pub fn endpoints_path(kubeconfig: &std::path::Path) -> PathBuf {
    let mut name = kubeconfig.as_os_str().to_owned();
    name.push(".endpoints.json");
    PathBuf::from(name)
}
