//! `up`, `status`, `down` and `kubeconfig`: the fleet's lifecycle on a management cluster.
//! The arguments of `gcp setup` live here too; its body is in `cmd::gcp`.
//!
//! The command layer here turns arguments into options, validates/plans/renders in memory, and
//! prints; the convergence itself is in [`engine`], the status in [`report`], talking to the
//! API servers through `meshfleet-kube`.

mod engine;
mod mesh;
pub(crate) mod meshstatus;
mod objects;
mod progress;
mod promtext;
mod report;
mod simproc;
mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use meshfleet_kube::{Kube, KubeError, ObjectRef};
use serde_json::Value;

use clap::{Args, Subcommand};

use crate::cli::{FleetArg, TableOrJson};
use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};

/// Arguments of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// Start the embedded simulator (in-process) as the management cluster for this run. Its
    /// state is kept in `.meshfleet/sim/<fleet>/` beside the fleet file, so a re-run resumes;
    /// `MESHFLEET_SIM_SPEED=10` makes its simulated time ten times faster.
    #[arg(long)]
    pub sim: bool,
    /// How long one cluster may take before it fails the run (e.g. 20m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How many clusters converge at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
    /// Keep watching and redraw on change.
    #[arg(long)]
    pub watch: bool,
}

/// Arguments of `down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Delete only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// How long one cluster may take to be gone before it fails the run (e.g. 20m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Management cluster kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Merge into the existing file instead of replacing it (other contexts are kept).
    #[arg(long)]
    pub merge: bool,
    /// Where to write (default: stdout is never used for credentials; `./<fleet>.kubeconfig`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `gcp`.
#[derive(Debug, Args)]
pub struct GcpArgs {
    #[command(subcommand)]
    pub command: GcpCommand,
}

/// `gcp` subcommands.
#[derive(Debug, Subcommand)]
pub enum GcpCommand {
    /// Create the GCP prerequisites (APIs, service account, bucket, image, network, NAT, firewall).
    Setup(GcpSetupArgs),
}

/// Arguments of `gcp setup`.
#[derive(Debug, Args)]
pub struct GcpSetupArgs {
    #[command(flatten)]
    pub fleet: FleetArg,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Google API endpoint override (plain HTTP, anonymous credentials), e.g. the simulator's.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Talos GCP image to upload (file path or URL).
    #[arg(long)]
    pub image_source: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: TableOrJson,
}

/// Parse `90s`, `20m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 90s, 20m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}` has an unknown unit `{unit}`: use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Write `meshfleet.lock` (atomically) when planning changed it, as `plan` does.
fn write_lock(
    ctx: &Ctx,
    input: &common::FleetInput,
    plan: &meshfleet_plan::Plan,
) -> anyhow::Result<()> {
    let path = input.lock_path();
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let new = plan
        .lock
        .to_yaml()
        .map_err(|e| anyhow!("cannot serialise `{}`: {e}", path.display()))?;
    if old.as_deref() != Some(new.as_str()) {
        crate::fsutil::write_atomic(&path, new.as_bytes(), 0o644)?;
        ctx.info(&format!("wrote {}", path.display()));
    }
    Ok(())
}

struct Prepared {
    input: common::FleetInput,
    plan: meshfleet_plan::Plan,
    rendered: meshfleet_render::Rendered,
}

fn prepare(ctx: &Ctx, file: &Path, write: bool) -> anyhow::Result<Prepared> {
    let input = common::load_fleet(ctx, file)?;
    let lock = common::load_lock(&input)?;
    let plan = common::plan_fleet(ctx, &input, lock.as_ref())?;
    if write {
        write_lock(ctx, &input, &plan)?;
    }
    let rendered = meshfleet_render::render(&input.loaded.fleet, &plan)
        .map_err(|e| anyhow!("cannot render the fleet: {e}"))?;
    Ok(Prepared {
        input,
        plan,
        rendered,
    })
}

async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<Kube> {
    connect_with(
        kubeconfig,
        "pass `--kubeconfig FILE`, or use `meshfleet up --sim` for the embedded simulator",
        "is it running? a simulator kept by `up --sim` is served again with `meshfleet sim serve --state DIR --kubeconfig FILE`",
    )
    .await
}

/// Load the management cluster's kubeconfig and fail fast, with its address and a hint, when
/// nothing answers: every later call would retry for long. The hints are the caller's, as each
/// command knows best what the user can do next.
pub(crate) async fn connect_with(
    kubeconfig: Option<&Path>,
    config_hint: &str,
    unreachable_hint: &str,
) -> anyhow::Result<Kube> {
    let k = Kube::from_path(kubeconfig)
        .await
        .map_err(|e| anyhow!("{e}\n  hint: {config_hint}"))?;
    let probe = k.clone().with_retry(meshfleet_kube::Retry {
        attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
    });
    match probe
        .get(&ObjectRef::new("v1", "Namespace", None, "default"))
        .await
    {
        Err(e) if e.is_transient() => Err(anyhow!(
            "the management cluster at `{}` does not answer: {e}\n  hint: {unreachable_hint}",
            k.server()
        )),
        _ => Ok(k),
    }
}

/// `meshfleet up`.
pub fn up(ctx: &Ctx, a: UpArgs) -> anyhow::Result<Exit> {
    if a.concurrency == 0 {
        return Err(Invalid::new(
            "`--concurrency` is `0`: nothing could converge\n  hint: use `--concurrency 1` or more",
        ));
    }
    let speed = if a.sim { simproc::speed()? } else { 1.0 };
    let p = prepare(ctx, &a.fleet.file, true)?;
    let rt = runtime()?;
    rt.block_on(async {
        let sim = if a.sim {
            let fleet = &p.input.loaded.fleet;
            let dir = simproc::sim_dir(&p.input.path, &fleet.metadata.name);
            let egress = simproc::egress_ip(&fleet.spec.management.egress_cidrs)?;
            let (sim, kc) = simproc::start(&dir, egress, speed).await?;
            ctx.info(&format!(
                "simulator: management cluster at https://{} (egress {egress}), kubeconfig {}, state {} (kept: a re-run resumes from it)",
                sim.addr(),
                kc.display(),
                dir.join("state").display()
            ));
            Some((sim, kc, dir))
        } else {
            None
        };
        let prereq = match &sim {
            Some(_) => meshfleet_render::gcp_prerequisites(&p.input.loaded.fleet, &p.plan)
                .map_err(|e| Invalid::new(e.to_string()))?,
            None => None,
        };
        // The simulated project is prepared alongside the apply, as CAPG on a real project
        // waits for a network that is still being made: the infrastructure waits overlap.
        let cloud = async {
            let (Some((sim, _, dir)), Some(prereq)) = (&sim, &prereq) else {
                return std::future::pending::<anyhow::Error>().await;
            };
            let started = Instant::now();
            match simproc::gcp_setup(sim, dir, prereq).await {
                Ok(changed) => {
                    ctx.info(&format!(
                        "simulator: GCP project `{}` prepared as `meshfleet gcp setup` would ({changed} changes, {:.1}s; Google APIs at {})",
                        prereq.project,
                        started.elapsed().as_secs_f64(),
                        sim.gcp_url()
                    ));
                    std::future::pending::<anyhow::Error>().await
                }
                Err(e) => e,
            }
        };
        let kubeconfig = sim.as_ref().map(|(_, k, _)| k.clone()).or(a.kubeconfig.clone());
        // Ctrl-C stops at once: every step is a convergent apply, so a re-run picks up here.
        // The simulator (when embedded) is still shut down cleanly so its state is saved.
        let result = tokio::select! {
            r = up_async(ctx, &a, &p, kubeconfig.as_deref()) => r,
            e = cloud => Err(e),
            _ = tokio::signal::ctrl_c() => {
                ctx.error("interrupted\n  hint: run `meshfleet up` again: it converges from where this run stopped");
                Ok(Exit::Failed)
            }
        };
        if let Some((sim, _, dir)) = sim {
            if let Err(e) = sim.shutdown().await {
                ctx.warn(&format!("the simulator did not stop cleanly: {e}"));
            }
            ctx.info(&format!(
                "simulator stopped (state kept); to reach it again: `meshfleet sim serve --state {} --kubeconfig {}`, then e.g. `meshfleet status --kubeconfig {}` in another terminal",
                dir.join("state").display(),
                dir.join("kubeconfig").display(),
                dir.join("kubeconfig").display()
            ));
        }
        result
    })
}

async fn up_async(
    ctx: &Ctx,
    a: &UpArgs,
    p: &Prepared,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let fleet = &p.input.loaded.fleet;
    let name = fleet.metadata.name.clone();
    let mgmt = connect(kubeconfig).await?;

    // Providers first: applying into a cluster that lacks a CRD fails half-way.
    let kinds = engine::kinds(&p.rendered);
    let missing = mgmt
        .missing_kinds(kinds.iter().map(|(a, k)| (a.as_str(), k.as_str())))
        .await?;
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(a, k)| format!("`{a}` `{k}`"))
            .collect();
        ctx.error(&format!(
            "the management cluster at `{}` does not serve {}\n  hint: install the providers: `{}`",
            mgmt.server(),
            list.join(", "),
            engine::install_hint(&missing)
        ));
        return Ok(Exit::Failed);
    }

    let mut labels = fleet.metadata.labels.clone();
    labels.insert(objects::FLEET_LABEL.to_string(), name.clone());
    let opts = engine::UpOptions {
        fleet: name.clone(),
        timeout: a.timeout,
        concurrency: a.concurrency,
        mesh: fleet.spec.mesh.enabled,
        labels,
        mesh_ids: p
            .plan
            .clusters
            .iter()
            .map(|c| (c.name.clone(), u32::from(c.mesh_id)))
            .collect(),
        max_connected: u32::from(fleet.spec.mesh.max_connected_clusters),
    };
    engine::apply_fleet_objects(&mgmt, &p.rendered).await?;
    let secrets = engine::workload_secrets(
        &mgmt,
        &opts,
        fleet.spec.mesh.encryption == meshfleet_spec::Encryption::Ipsec,
    )
    .await?;
    let known_ips = engine::recorded_ips(&mgmt, &p.rendered).await;
    let names: Vec<String> = p.rendered.clusters.iter().map(|c| c.name.clone()).collect();
    let progress = Arc::new(progress::Progress::new(ctx.quiet, &names));
    let control_plane_kinds: Vec<(String, String)> = kinds
        .iter()
        .filter(|(_, k)| k.ends_with("ControlPlane"))
        .cloned()
        .collect();
    let (snapshot, lister) = snapshot::spawn(
        mgmt.clone(),
        name.clone(),
        control_plane_kinds,
        engine::LIST_INTERVAL,
    );
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.concurrency));
    let shared = Arc::new(engine::Shared {
        mgmt: mgmt.clone(),
        opts,
        secrets,
        progress: progress.clone(),
        known_ips,
        snapshot,
    });
    let proxies: BTreeMap<String, Value> = p
        .rendered
        .fleet_objects
        .iter()
        .filter(|o| objects::is_proxy(o))
        .filter_map(|o| Some((objects::proxy_cluster(o)?, o.clone())))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for c in &p.rendered.clusters {
        set.spawn(engine::converge_cluster(
            shared.clone(),
            c.name.clone(),
            c.objects.clone(),
            proxies.get(&c.name).cloned(),
            sem.clone(),
        ));
    }
    let mut outcomes = Vec::new();
    while let Some(r) = set.join_next().await {
        let o = r.context("a cluster's task panicked")?;
        match &o.failure {
            Some(f) => progress.finish(&o.cluster, false, f),
            None if !shared.opts.mesh => progress.finish(&o.cluster, true, "ready"),
            None => {}
        }
        outcomes.push(o);
    }

    let mut mesh_problems = BTreeMap::new();
    if shared.opts.mesh {
        mesh_problems = engine::connect_mesh(
            &shared,
            &p.rendered,
            &p.plan.mesh_peers,
            &outcomes,
            a.timeout,
        )
        .await?;
    }
    lister.abort();
    progress.clear();

    let expected = report::expected(fleet, &p.plan.mesh_peers);
    let st = report::collect(&mgmt, &name, &expected, shared.opts.mesh).await;
    print!("{}", report::table(&st, shared.opts.mesh, ctx.colour_out));

    let mut failed = false;
    outcomes.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    for o in &outcomes {
        if let Some(f) = &o.failure {
            failed = true;
            ctx.error(&format!("cluster `{}`: {f}", o.cluster));
        }
    }
    for (c, ps) in &mesh_problems {
        failed = true;
        for p in ps {
            ctx.error(&format!("mesh `{c}`: {p}"));
        }
    }
    ctx.info(&format!(
        "{} in {:.1}s",
        if failed { "failed" } else { "converged" },
        started.elapsed().as_secs_f64()
    ));
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

/// `meshfleet status`.
pub fn status(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<Exit> {
    let p = prepare(ctx, &a.fleet.file, false)?;
    let rt = runtime()?;
    rt.block_on(async {
        let fleet = &p.input.loaded.fleet;
        let mgmt = connect(a.kubeconfig.as_deref()).await?;
        let expected = report::expected(fleet, &p.plan.mesh_peers);
        let mesh_on = fleet.spec.mesh.enabled;
        let mut last = String::new();
        loop {
            let st = report::collect(&mgmt, &fleet.metadata.name, &expected, mesh_on).await;
            let text = match a.output {
                TableOrJson::Json => serde_json::to_string_pretty(&st)? + "\n",
                TableOrJson::Table => report::table(&st, mesh_on, ctx.colour_out),
            };
            if text != last {
                if a.watch && !last.is_empty() && matches!(a.output, TableOrJson::Table) {
                    println!();
                }
                print!("{text}");
                last = text;
            }
            if !a.watch {
                return Ok(Exit::Ok);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// `meshfleet down`.
pub fn down(ctx: &Ctx, a: DownArgs) -> anyhow::Result<Exit> {
    let p = prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;
    if let Some(c) = &a.cluster
        && !p.rendered.clusters.iter().any(|x| &x.name == c)
    {
        return Err(Invalid::new(format!(
            "`--cluster {c}` is not a cluster of fleet `{}`\n  hint: one of {}",
            fleet.metadata.name,
            p.rendered
                .clusters
                .iter()
                .map(|x| format!("`{}`", x.name))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let rt = runtime()?;
    rt.block_on(down_async(ctx, &a, &p))
}

/// Delete `r` if it exists and carries `meshfleet.io/fleet=<fleet>`; refuse otherwise.
async fn delete_owned(mgmt: &Kube, r: &ObjectRef, fleet: &str) -> anyhow::Result<bool> {
    let Some(live) = mgmt.get(r).await? else {
        return Ok(false);
    };
    match objects::labels(&live).get(objects::FLEET_LABEL) {
        Some(f) if f == fleet => {}
        other => {
            return Err(anyhow!(
                "refusing to delete {r}: its label `{}` is {} instead of `{fleet}`\n  hint: it was not created by this fleet; delete it yourself if it must go",
                objects::FLEET_LABEL,
                other.map_or("absent".to_string(), |v| format!("`{v}`"))
            ));
        }
    }
    Ok(mgmt.delete(r).await?)
}

async fn down_async(ctx: &Ctx, a: &DownArgs, p: &Prepared) -> anyhow::Result<Exit> {
    let fleet = &p.input.loaded.fleet.metadata.name;
    let mgmt = connect(a.kubeconfig.as_deref()).await?;
    let targets: Vec<&meshfleet_render::ClusterObjects> = p
        .rendered
        .clusters
        .iter()
        .filter(|c| a.cluster.as_ref().is_none_or(|n| n == &c.name))
        .collect();
    let mut targets: Vec<meshfleet_render::ClusterObjects> = targets.into_iter().cloned().collect();
    if a.cluster.is_none() {
        // Clusters of this fleet that the fleet file no longer names go too: nothing else
        // would ever delete them.
        let selector = format!("{}={fleet}", objects::FLEET_LABEL);
        let live = mgmt
            .list(objects::CAPI_VERSION, "Cluster", Some(fleet), &selector)
            .await?;
        for c in live {
            let Some(name) = c.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            if !targets.iter().any(|t| t.name == name) {
                ctx.info(&format!(
                    "{name}: not in the fleet file any more; deleting it too"
                ));
                targets.push(meshfleet_render::ClusterObjects {
                    name: name.to_string(),
                    objects: Vec::new(),
                });
            }
        }
    }
    let kinds: Vec<(String, String)> = engine::kinds(&p.rendered)
        .into_iter()
        .filter(|(_, k)| !matches!(k.as_str(), "Namespace" | "Cluster"))
        .collect();
    let mut failed = false;
    let timeout = a.timeout;
    let mut set = tokio::task::JoinSet::new();
    for c in targets {
        let (mgmt, fleet, kinds) = (mgmt.clone(), fleet.clone(), kinds.clone());
        let proxy = p
            .rendered
            .fleet_objects
            .iter()
            .find(|o| objects::is_proxy(o) && objects::proxy_cluster(o).as_deref() == Some(&c.name))
            .cloned();
        set.spawn(async move {
            let r = down_cluster(&mgmt, &fleet, &c, proxy.as_ref(), &kinds, timeout).await;
            (c.name.clone(), r)
        });
    }
    while let Some(r) = set.join_next().await {
        let (name, r) = r.context("a cluster's task panicked")?;
        match r {
            Ok(()) => ctx.info(&format!("{name}: deleted")),
            Err(e) => {
                failed = true;
                ctx.error(&format!("cluster `{name}`: {e:#}"));
            }
        }
    }
    if a.cluster.is_none() && !failed {
        // Whole fleet: the mesh CA and then the namespace go last.
        for name in [
            objects::mesh_ca_secret(fleet),
            format!("{fleet}-ipsec-keys"),
        ] {
            let r = ObjectRef::new("v1", "Secret", Some(fleet), &name);
            if let Err(e) = delete_owned(&mgmt, &r, fleet).await {
                failed = true;
                ctx.error(&format!("{e:#}"));
            }
        }
        for o in p.rendered.fleet_objects.iter().rev() {
            let r = ObjectRef::of(o)?;
            if let Err(e) = delete_owned(&mgmt, &r, fleet).await {
                failed = true;
                ctx.error(&format!("{e:#}"));
            }
        }
    }
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

/// One cluster, in order: its Cilium proxy (CAAPH uninstalls the release while the cluster
/// still runs), then the Cluster (Cluster API tears down machines and infrastructure), waiting
/// until it is gone, then the templates and configs nothing owns any more.
async fn down_cluster(
    mgmt: &Kube,
    fleet: &str,
    c: &meshfleet_render::ClusterObjects,
    proxy: Option<&Value>,
    kinds: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let proxy = match proxy {
        Some(p) => ObjectRef::of(p)?,
        None => ObjectRef::new(
            "addons.cluster.x-k8s.io/v1alpha1",
            "HelmChartProxy",
            Some(fleet),
            &meshfleet_render::proxy_name(&c.name),
        ),
    };
    match delete_owned(mgmt, &proxy, fleet).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.downcast_ref::<KubeError>(),
                Some(KubeError::NotServed { .. })
            ) => {}
        Err(e) => return Err(e),
    }
    let cref = objects::cluster_ref(fleet, &c.name);
    delete_owned(mgmt, &cref, fleet).await?;
    let (last, gone) = mgmt
        .wait(&cref, timeout, Duration::from_millis(200), |o| o.is_none())
        .await?;
    if !gone {
        let why = last
            .map(|live| meshfleet_kube::status::conditions(&live))
            .and_then(|conds| {
                meshfleet_kube::status::condition(&conds, "Deleting")
                    .and_then(|c| c.message.clone())
            })
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Err(anyhow!(
            "Cluster `{fleet}/{}` is still being deleted after {}s{why}",
            c.name,
            timeout.as_secs()
        ));
    }
    for o in c.objects.iter().rev() {
        let r = ObjectRef::of(o)?;
        if r.kind == "Cluster" {
            continue;
        }
        match delete_owned(mgmt, &r, fleet).await {
            Ok(_) => {}
            // A kind whose provider is gone has nothing left to delete.
            Err(e)
                if matches!(
                    e.downcast_ref::<KubeError>(),
                    Some(KubeError::NotServed { .. })
                ) => {}
            Err(e) => return Err(e),
        }
    }
    // What the fleet file no longer renders (a removed worker pool, a removed cluster) is
    // found by its labels.
    let selector = format!(
        "{}={fleet},{}={}",
        objects::FLEET_LABEL,
        objects::CLUSTER_LABEL,
        c.name
    );
    for (api_version, kind) in kinds {
        let live = match mgmt.list(api_version, kind, Some(fleet), &selector).await {
            Ok(l) => l,
            Err(KubeError::NotServed { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for o in live {
            mgmt.delete(&ObjectRef::of(&o)?).await?;
        }
    }
    Ok(())
}

/// `meshfleet kubeconfig`.
pub fn kubeconfig(ctx: &Ctx, a: KubeconfigArgs) -> anyhow::Result<Exit> {
    let input = common::load_fleet(ctx, &a.fleet.file)?;
    let fleet = &input.loaded.fleet;
    let name = fleet.metadata.name.clone();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.kubeconfig")));
    let rt = runtime()?;
    let parts = rt.block_on(async {
        let mgmt = connect(a.kubeconfig.as_deref()).await?;
        let mut parts = Vec::new();
        let mut absent = Vec::new();
        for c in &fleet.spec.clusters {
            let secret = objects::kubeconfig_secret(&c.name);
            match mgmt.secret_value(&name, &secret, "value").await? {
                Some(v) => {
                    let what = format!("Secret `{name}/{secret}`");
                    let kc =
                        meshfleet_kube::kubeconfig::parse(&String::from_utf8_lossy(&v), &what)?;
                    parts.push(meshfleet_kube::kubeconfig::single_context(
                        &kc, &c.name, &what,
                    )?);
                }
                None => absent.push(c.name.clone()),
            }
        }
        anyhow::Ok((parts, absent))
    })?;
    let (parts, absent) = parts;
    for c in &absent {
        ctx.warn(&format!(
            "cluster `{c}` has no kubeconfig yet (not created or still bootstrapping); skipped"
        ));
    }
    if parts.is_empty() {
        ctx.error("no cluster of the fleet has a kubeconfig yet\n  hint: run `meshfleet up` first");
        return Ok(Exit::Failed);
    }
    let n = parts.len();
    let ours = meshfleet_kube::kubeconfig::combine(parts);
    let merged = if a.merge {
        match std::fs::read_to_string(&out) {
            Ok(text) => {
                let existing =
                    meshfleet_kube::kubeconfig::parse(&text, &format!("`{}`", out.display()))
                        .map_err(|e| {
                            Invalid::new(format!(
                                "{e}\n  hint: fix it, or write elsewhere with `--out FILE`"
                            ))
                        })?;
                meshfleet_kube::kubeconfig::merge(existing, ours)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ours,
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", out.display())),
        }
    } else {
        ours
    };
    let text = meshfleet_kube::kubeconfig::to_yaml(&merged)?;
    crate::fsutil::write_atomic(&out, text.as_bytes(), 0o600)?;
    ctx.info(&format!(
        "wrote {} ({n} context{}{})",
        out.display(),
        if n == 1 { "" } else { "s" },
        if a.merge { ", merged" } else { "" }
    ));
    Ok(if absent.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_hint_names_the_providers() {
        let m = vec![
            (
                "infrastructure.cluster.x-k8s.io/v1beta1".to_string(),
                "GCPCluster".to_string(),
            ),
            (
                "infrastructure.cluster.x-k8s.io/v1beta2".to_string(),
                "AWSCluster".to_string(),
            ),
            (
                "bootstrap.cluster.x-k8s.io/v1alpha3".to_string(),
                "TalosConfigTemplate".to_string(),
            ),
            (
                "controlplane.cluster.x-k8s.io/v1alpha3".to_string(),
                "TalosControlPlane".to_string(),
            ),
            (
                "addons.cluster.x-k8s.io/v1alpha1".to_string(),
                "HelmChartProxy".to_string(),
            ),
        ];
        assert_eq!(
            engine::install_hint(&m),
            "clusterctl init --infrastructure aws,gcp --bootstrap talos --control-plane talos --addon helm"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2x").is_err());
    }
}
