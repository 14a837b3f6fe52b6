//! `meshfleet sim fail` and `sim heal`: failure rehearsal against a running simulator
//! (`--kubeconfig`, e.g. `sim serve`'s) or the one `up --sim` kept (`--sim -f FILE`).
//!
//! An outage is an object of the simulator's own kind `Outage` (`sim.meshfleet.io/v1alpha1`,
//! see `meshfleet_sim::outage`) in the management API: `fail` applies one, `heal` deletes it.
//! A real management cluster does not serve that kind, so these commands refuse to run
//! against one.

use std::path::PathBuf;

use clap::Args;
use meshfleet_kube::{Kube, ObjectRef};
use serde_json::{Value, json};

use crate::cmd::common;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::simproc;

const API_VERSION: &str = "sim.meshfleet.io/v1alpha1";
const KIND: &str = "Outage";

/// Arguments of `sim fail` and `sim heal`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["cluster", "region", "link", "all"])))]
pub struct OutageArgs {
    /// Fleet file (with `--sim`: whose kept simulator to use).
    #[arg(
        short = 'f',
        long = "file",
        default_value = "fleet.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// Kubeconfig of a running simulator's management cluster.
    #[arg(long, conflicts_with = "sim")]
    pub kubeconfig: Option<PathBuf>,
    /// The simulator state kept by `up --sim` for the fleet file.
    #[arg(long)]
    pub sim: bool,
    /// One cluster: its machines stop answering.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Every cluster of a region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// The network path between two clusters (`A,B`); both keep running.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub link: Option<Vec<String>>,
    /// (`heal` only) every outage.
    #[arg(long)]
    pub all: bool,
}

/// What one outage names.
enum Target {
    Cluster(String),
    Region(String),
    Link(String, String),
}

impl Target {
    fn of(a: &OutageArgs) -> Option<Self> {
        if let Some(c) = &a.cluster {
            return Some(Self::Cluster(c.clone()));
        }
        if let Some(r) = &a.region {
            return Some(Self::Region(r.clone()));
        }
        match a.link.as_deref() {
            Some([x, y]) => {
                let (x, y) = if x <= y { (x, y) } else { (y, x) };
                Some(Self::Link(x.clone(), y.clone()))
            }
            _ => None,
        }
    }
    fn name(&self) -> String {
        match self {
            Self::Cluster(c) => format!("cluster-{c}"),
            Self::Region(r) => format!("region-{r}"),
            Self::Link(a, b) => format!("link-{a}-{b}"),
        }
    }
    fn spec(&self) -> Value {
        match self {
            Self::Cluster(c) => json!({"cluster": c}),
            Self::Region(r) => json!({"region": r}),
            Self::Link(a, b) => json!({"link": [a, b]}),
        }
    }
    fn describe(&self) -> String {
        match self {
            Self::Cluster(c) => format!("cluster `{c}`"),
            Self::Region(r) => format!("region `{r}`"),
            Self::Link(a, b) => format!("the link between `{a}` and `{b}`"),
        }
    }
}

/// The management clusters' Cluster names and their regions (from the infrastructure kinds).
async fn clusters(kube: &Kube) -> anyhow::Result<Vec<(String, String)>> {
    let mut regions = std::collections::BTreeMap::new();
    for kind in ["GCPCluster", "AWSCluster"] {
        let av = if kind == "GCPCluster" {
            "infrastructure.cluster.x-k8s.io/v1beta1"
        } else {
            "infrastructure.cluster.x-k8s.io/v1beta2"
        };
        for o in kube.list(av, kind, None, "").await.unwrap_or_default() {
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let region = o
                .pointer("/spec/region")
                .and_then(Value::as_str)
                .unwrap_or("");
            regions.insert(name.to_string(), region.to_string());
        }
    }
    let list = kube
        .list("cluster.x-k8s.io/v1beta2", "Cluster", None, "")
        .await?;
    Ok(list
        .iter()
        .filter_map(|c| {
            let n = c.pointer("/metadata/name")?.as_str()?.to_string();
            let infra = c
                .pointer("/spec/infrastructureRef/name")
                .and_then(Value::as_str)
                .unwrap_or(&n);
            let region = regions.get(infra).cloned().unwrap_or_default();
            Some((n, region))
        })
        .collect())
}

/// `sim fail` (`heal: false`) or `sim heal` (`heal: true`).
pub fn run(ctx: &Ctx, a: OutageArgs, heal: bool) -> anyhow::Result<Exit> {
    if a.all && !heal {
        return Err(Invalid::new(
            "`--all` only heals; name what fails with `--cluster`, `--region` or `--link A,B`",
        ));
    }
    if let Some(l) = &a.link
        && (l.len() != 2 || l[0] == l[1] || l.iter().any(String::is_empty))
    {
        return Err(Invalid::new(format!(
            "`--link {}` must name two different clusters\n  hint: `--link A,B`",
            l.join(",")
        )));
    }
    let target = Target::of(&a);
    let rt = common::runtime()?;
    rt.block_on(async {
        let (kube, mgmt) = if a.sim {
            let input = common::load_fleet(ctx, &a.file)?;
            let fleet = input.loaded.fleet.clone();
            let m = simproc::Mgmt::open(ctx, &input.path, &fleet, true, None).await?;
            (m.kube.clone(), Some(m))
        } else {
            let kube = common::connect_with(
                a.kubeconfig.as_deref(),
                "pass `--kubeconfig FILE` of a running `meshfleet sim serve`, or `--sim -f FILE` for the simulator `up --sim` kept",
                "is the simulator running?",
            )
            .await?;
            (kube, None)
        };
        let r = act(ctx, &kube, target, heal).await;
        if let Some(m) = mgmt {
            m.close(ctx).await;
        }
        r
    })
}

async fn act(ctx: &Ctx, kube: &Kube, target: Option<Target>, heal: bool) -> anyhow::Result<Exit> {
    let missing = kube
        .missing_kinds(vec![(API_VERSION, KIND)])
        .await
        .map_err(anyhow::Error::from)?;
    if !missing.is_empty() {
        return Err(Invalid::new(format!(
            "`{}` does not serve `{API_VERSION}` `{KIND}`: it is not a meshfleet simulator\n  hint: `sim fail` and `sim heal` rehearse outages on the simulator only (`meshfleet sim serve`, or `--sim` for the state `up --sim` kept)",
            kube.server()
        )));
    }
    let Some(target) = target else {
        // heal --all
        let all = kube.list(API_VERSION, KIND, None, "").await?;
        for o in &all {
            let name = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            kube.delete(&ObjectRef::new(API_VERSION, KIND, None, name))
                .await?;
        }
        ctx.info(&format!(
            "healed {} outage(s); the mesh converges back on its own",
            all.len()
        ));
        return Ok(Exit::Ok);
    };
    let r = ObjectRef::new(API_VERSION, KIND, None, &target.name());
    if heal {
        if kube.delete(&r).await? {
            ctx.info(&format!(
                "healed {}; the mesh converges back on its own (no `up` needed)",
                target.describe()
            ));
            Ok(Exit::Ok)
        } else {
            ctx.warn(&format!("no outage of {} to heal", target.describe()));
            Ok(Exit::Ok)
        }
    } else {
        let known = clusters(kube).await?;
        let affected: Vec<&str> = match &target {
            Target::Cluster(c) => known
                .iter()
                .filter(|(n, _)| n == c)
                .map(|(n, _)| n.as_str())
                .collect(),
            Target::Region(reg) => known
                .iter()
                .filter(|(_, r)| r == reg)
                .map(|(n, _)| n.as_str())
                .collect(),
            Target::Link(x, y) => {
                let has = |c: &str| known.iter().any(|(n, _)| n == c);
                if has(x) && has(y) {
                    vec![x.as_str(), y.as_str()]
                } else {
                    Vec::new()
                }
            }
        };
        if affected.is_empty() {
            let names: Vec<String> = known.iter().map(|(n, r)| format!("{n} ({r})")).collect();
            return Err(Invalid::new(format!(
                "{} names no cluster of the management cluster at `{}`\n  hint: its clusters: {}",
                target.describe(),
                kube.server(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        kube.apply(&json!({"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": target.name()}, "spec": target.spec()}))
            .await?;
        ctx.info(&format!(
            "failed {} (clusters: {}); see `meshfleet status`, `mesh status`, `mesh test`; undo with `meshfleet sim heal` and the same selector",
            target.describe(),
            affected.join(", ")
        ));
        Ok(Exit::Ok)
    }
}
