//! `mesh status`: the mesh of a running fleet, read the same way from the simulator and from
//! real clusters — the management cluster (Cluster objects, Cilium's HelmChartProxy values, the
//! `<cluster>-kubeconfig` Secrets) and, through those kubeconfigs, each workload cluster's own
//! Cilium (`cilium-config`, `cilium-clustermesh`, `cilium-ca`, the clustermesh-apiserver
//! Service and Cilium's mesh view).
//!
//! Collecting is I/O; judging ([`evaluate`]) is pure, so the checks are tested without a
//! cluster. The CA's private key is never read: only `ca.crt` is fetched, for its fingerprint
//! and expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use meshfleet_kube::{Kube, KubeError, ObjectRef};
use meshfleet_mesh::time::OffsetDateTime;
use meshfleet_mesh::{MeshMember, MeshProblem, Severity as MeshSeverity};
use serde::Serialize;
use serde_json::Value;

use super::{mesh, objects, simproc};
use crate::cli::TableOrJson;
use crate::cmd::mesh::MeshStatusArgs;
use crate::ctx::{Ctx, Exit, Invalid};
use crate::output::Table;

/// Certificates expiring within this many days are warned about.
pub const EXPIRY_WARN_DAYS: i64 = 30;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The mesh does not work (or misroutes) until fixed.
    Error,
    /// Works now, will not for long, or looks accidental.
    Warning,
}

/// One problem, for people and programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `error` or `warning`.
    pub severity: Severity,
    /// What is wrong, values in backticks.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Problem {
    fn error(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    fn warning(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// From a mesh-crate check, whose message carries its hint after `\n  hint: `.
    fn from_mesh(p: &MeshProblem) -> Self {
        let text = p.message();
        let (message, hint) = match text.split_once("\n  hint: ") {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (text, None),
        };
        Self {
            severity: match p.severity() {
                MeshSeverity::Error => Severity::Error,
                MeshSeverity::Warning => Severity::Warning,
            },
            message,
            hint,
        }
    }
}

/// One peer as seen from a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// Peer name.
    pub name: String,
    /// The plan makes it a peer.
    pub expected: bool,
    /// The cluster's Cilium is configured to dial it.
    pub configured: bool,
    /// Cilium reports it connected.
    pub connected: bool,
    /// Why not, as Cilium says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The mesh CA a cluster holds (`kube-system/cilium-ca`, `ca.crt` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaSummary {
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// Subject.
    pub subject: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
}

/// One meshed cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// Name in the fleet file.
    pub name: String,
    /// Cilium's `cluster-id` (from `cilium-config`), when read.
    pub cluster_id: Option<u32>,
    /// Cilium's `cluster-name`, when read.
    pub cilium_name: Option<String>,
    /// Peers the plan gives it: every other meshed cluster.
    pub expected_peers: Vec<String>,
    /// Peers its Cilium is configured with.
    pub configured_peers: Vec<String>,
    /// Peers Cilium reports connected.
    pub connected_peers: Vec<String>,
    /// Its clustermesh-apiserver endpoints (`https://ip:port`) that peers dial.
    pub endpoints: Vec<String>,
    /// Each peer in detail.
    pub peers: Vec<PeerState>,
    /// Its mesh CA.
    pub ca: Option<CaSummary>,
    /// Its pod CIDRs, as configured.
    pub pod_cidrs: Vec<String>,
    /// Its problems, errors first.
    pub problems: Vec<Problem>,
}

/// The mesh of the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct MeshReport {
    /// Fleet name.
    pub fleet: String,
    /// Meshed clusters, in fleet-file order.
    pub clusters: Vec<ClusterReport>,
    /// Problems between clusters (collisions, CA mismatch, overlaps), errors first.
    pub problems: Vec<Problem>,
}

impl MeshReport {
    /// Is any problem an error?
    pub fn has_error(&self) -> bool {
        self.problems
            .iter()
            .chain(self.clusters.iter().flat_map(|c| c.problems.iter()))
            .any(|p| p.severity == Severity::Error)
    }
}

/// What was read about one cluster. `problems` holds what reading itself found wrong.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Name in the fleet file.
    pub name: String,
    /// The Cluster object exists.
    pub exists: bool,
    /// The workload API answered.
    pub reachable: bool,
    /// `cilium-config`: `cluster-name`, `cluster-id`, `max-connected-clusters`.
    pub cilium: Option<(String, Option<u32>, u32)>,
    /// Peers in the workload's `cilium-clustermesh` Secret (None when it is absent).
    pub secret_peers: Option<Vec<String>>,
    /// Peers in the HelmChartProxy values (None when there is no proxy).
    pub proxy_peers: Option<Vec<String>>,
    /// Cilium's view.
    pub view: Option<mesh::MeshView>,
    /// Endpoints.
    pub endpoints: Option<mesh::Endpoints>,
    /// `ca.crt` of `cilium-ca`: summary and expiry.
    pub ca: Option<(CaSummary, OffsetDateTime)>,
    /// Pod CIDRs (Cluster object, and Cilium's cluster-pool when it says).
    pub pod_cidrs: Vec<IpNet>,
    /// The Cluster's infrastructure object (GCPCluster, AWSCluster): node CIDR and firewall.
    pub infra: Option<Value>,
    /// Problems found while reading.
    pub problems: Vec<Problem>,
}

/// What the plan says about one cluster.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Name.
    pub name: String,
    /// Mesh ID in the plan (meshfleet.lock).
    pub mesh_id: u32,
    /// Peers.
    pub peers: Vec<String>,
}

/// `meshfleet mesh status`.
pub fn run(ctx: &Ctx, a: MeshStatusArgs) -> anyhow::Result<Exit> {
    let speed = if a.sim { simproc::speed()? } else { 1.0 };
    let p = super::prepare(ctx, &a.fleet.file, false)?;
    let fleet = &p.input.loaded.fleet;
    let name = fleet.metadata.name.clone();
    let sim_dir = simproc::sim_dir(&p.input.path, &name);
    if a.sim && !sim_dir.join("state").is_dir() {
        return Err(Invalid::new(format!(
            "`--sim`: no simulator state for fleet `{name}` at `{}`\n  hint: create the fleet on the embedded simulator first with `meshfleet up --sim -f {}`",
            sim_dir.join("state").display(),
            a.fleet.file.display()
        )));
    }
    let planned: Vec<Planned> = if fleet.spec.mesh.enabled {
        p.plan
            .clusters
            .iter()
            .map(|c| Planned {
                name: c.name.clone(),
                mesh_id: u32::from(c.mesh_id),
                peers: p.plan.mesh_peers.get(&c.name).cloned().unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let max = u32::from(fleet.spec.mesh.max_connected_clusters);
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let sim = if a.sim {
            let egress = simproc::egress_ip(&fleet.spec.management.egress_cidrs)?;
            let (sim, kc) = simproc::start(&sim_dir, egress, speed).await?;
            ctx.info(&format!(
                "simulator: serving the state kept in `{}` at https://{}",
                sim_dir.join("state").display(),
                sim.addr()
            ));
            Some((sim, kc))
        } else {
            None
        };
        let kubeconfig = sim
            .as_ref()
            .map(|(_, k)| k.clone())
            .or(a.kubeconfig.clone());
        let r = async {
            let mgmt = connect(kubeconfig.as_deref(), &sim_dir).await?;
            let facts = collect(&mgmt, &name, &planned).await;
            anyhow::Ok(evaluate(
                &name,
                &planned,
                max,
                facts,
                OffsetDateTime::now_utc(),
            ))
        }
        .await;
        if let Some((sim, _)) = sim
            && let Err(e) = sim.shutdown().await
        {
            ctx.warn(&format!("the simulator did not stop cleanly: {e}"));
        }
        r
    })?;
    let mut report = report;
    if !fleet.spec.mesh.enabled {
        report.problems.push(Problem::warning(
            format!("the mesh is not enabled in fleet `{name}`"),
            "set `spec.mesh.enabled: true` and run `meshfleet up`",
        ));
    }
    match a.output {
        TableOrJson::Json => crate::output::json(&report)?,
        TableOrJson::Table => print!("{}", table(&report, ctx.colour_out)),
    }
    let n = report.problems.len()
        + report
            .clusters
            .iter()
            .map(|c| c.problems.len())
            .sum::<usize>();
    if n == 0 {
        ctx.info(&format!(
            "mesh of `{name}`: {} cluster(s), every expected peer connected, no problem found",
            report.clusters.len()
        ));
    }
    Ok(if report.has_error() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// The management cluster, failing fast with its address and a hint when it does not answer.
async fn connect(kubeconfig: Option<&Path>, sim_dir: &Path) -> anyhow::Result<Kube> {
    // The concrete command when `up --sim` left a state here, the general form otherwise.
    let serve = if sim_dir.join("state").is_dir() {
        format!(
            "meshfleet sim serve --state {} --kubeconfig {}",
            sim_dir.join("state").display(),
            sim_dir.join("kubeconfig").display()
        )
    } else {
        "meshfleet sim serve --state DIR --kubeconfig FILE".to_string()
    };
    super::connect_with(
        kubeconfig,
        &format!("pass `--kubeconfig FILE`, `--sim` for the simulator kept by `up --sim`, or serve that state with `{serve}`"),
        &format!("is it running? for the simulator, start it with `{serve}` (or pass `--sim`)"),
    )
    .await
}

/// Read every planned cluster, concurrently.
pub async fn collect(mgmt: &Kube, fleet: &str, planned: &[Planned]) -> Vec<Facts> {
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in planned.iter().enumerate() {
        let (mgmt, fleet, name) = (mgmt.clone(), fleet.to_string(), c.name.clone());
        set.spawn(async move { (i, read_cluster(&mgmt, &fleet, &name).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, f)| f).collect()
}

fn unreachable(name: &str, server: &str, e: &KubeError) -> Problem {
    Problem::error(
        format!("the workload API of `{name}` at `{server}` does not answer: {e}"),
        "check the cluster's control plane (`meshfleet status`); its kubeconfig comes from the management cluster's `<cluster>-kubeconfig` Secret",
    )
}

async fn read_cluster(mgmt: &Kube, fleet: &str, name: &str) -> Facts {
    let mut f = Facts {
        name: name.to_string(),
        ..Facts::default()
    };
    let c_obj = match mgmt.get(&objects::cluster_ref(fleet, name)).await {
        Ok(Some(c)) => {
            f.exists = true;
            f.pod_cidrs.extend(
                c.pointer("/spec/clusterNetwork/pods/cidrBlocks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str()?.parse::<IpNet>().ok()),
            );
            c
        }
        Ok(None) => {
            f.problems.push(Problem::error(
                format!("cluster `{name}` is not created (no Cluster `{fleet}/{name}`)"),
                "run `meshfleet up`",
            ));
            return f;
        }
        Err(e) => {
            f.problems.push(Problem::error(
                format!("cannot read Cluster `{fleet}/{name}`: {e}"),
                "check the management cluster's health and your access to it",
            ));
            return f;
        }
    };
    if let Some(r) = infra_ref(&c_obj, fleet)
        && let Ok(Some(i)) = mgmt.get(&r).await
    {
        f.infra = Some(i);
    }
    let proxy = ObjectRef::new(
        "addons.cluster.x-k8s.io/v1alpha1",
        "HelmChartProxy",
        Some(fleet),
        &meshfleet_render::proxy_name(name),
    );
    if let Ok(Some(p)) = mgmt.get(&proxy).await {
        f.proxy_peers = Some(proxy_peers(&p));
    }

    let secret = objects::kubeconfig_secret(name);
    let kc = match mgmt.secret_value(fleet, &secret, "value").await {
        Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
        Ok(None) => {
            f.problems.push(Problem::error(
                format!("cluster `{name}` has no kubeconfig yet (no Secret `{fleet}/{secret}`)"),
                "it is still bootstrapping; see `meshfleet status`",
            ));
            return f;
        }
        Err(e) => {
            f.problems.push(Problem::error(
                format!("cannot read Secret `{fleet}/{secret}`: {e}"),
                "check your access to Secrets in the management cluster",
            ));
            return f;
        }
    };
    let w = match Kube::from_yaml(&kc, &format!("the kubeconfig of `{name}`")).await {
        Ok(w) => w.with_retry(meshfleet_kube::Retry {
            attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        }),
        Err(e) => {
            f.problems.push(Problem::error(
                format!("{e}"),
                format!(
                    "Cluster API writes Secret `{fleet}/{secret}`; check the control plane provider"
                ),
            ));
            return f;
        }
    };
    let cm = match w
        .get(&ObjectRef::new(
            "v1",
            "ConfigMap",
            Some("kube-system"),
            "cilium-config",
        ))
        .await
    {
        Ok(cm) => cm,
        Err(e) => {
            f.problems.push(unreachable(name, w.server(), &e));
            return f;
        }
    };
    f.reachable = true;
    let Some(cm) = cm else {
        f.problems.push(Problem::error(
            format!("Cilium is not installed in `{name}` (no ConfigMap `kube-system/cilium-config`)"),
            "run `meshfleet up`; Cluster API Add-on Provider for Helm installs Cilium from the HelmChartProxy",
        ));
        return f;
    };
    let d = |k: &str| {
        cm.pointer(&format!("/data/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    f.cilium = Some((
        d("cluster-name").unwrap_or_default(),
        d("cluster-id").and_then(|s| s.trim().parse().ok()),
        d("max-connected-clusters")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(255),
    ));
    if let Some(pool) = d("cluster-pool-ipv4-cidr") {
        f.pod_cidrs.extend(
            pool.split([' ', ','])
                .filter_map(|s| s.trim().parse::<IpNet>().ok()),
        );
    }
    f.pod_cidrs.sort();
    f.pod_cidrs.dedup();

    match w
        .get(&ObjectRef::new(
            "v1",
            "Secret",
            Some("kube-system"),
            "cilium-clustermesh",
        ))
        .await
    {
        // Only the keys: one per peer (Cilium's etcd config); the common client certificate
        // files have dotted names, which no cluster name has.
        Ok(Some(s)) => {
            let mut peers: Vec<String> = s
                .get("data")
                .and_then(Value::as_object)
                .map(|m| m.keys().filter(|k| !k.contains('.')).cloned().collect())
                .unwrap_or_default();
            peers.sort();
            f.secret_peers = Some(peers);
        }
        Ok(None) => {}
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }

    match w
        .secret_value(
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAMESPACE,
            meshfleet_mesh::pki::CILIUM_CA_SECRET_NAME,
            meshfleet_mesh::pki::CILIUM_CA_CERT_KEY,
        )
        .await
    {
        Ok(Some(pem)) => {
            let pem = String::from_utf8_lossy(&pem).into_owned();
            match meshfleet_mesh::pki::inspect_pem(&pem, "`kube-system/cilium-ca` `ca.crt`") {
                Ok(i) => {
                    f.ca = Some((
                        CaSummary {
                            fingerprint: i.fingerprint_sha256.clone(),
                            subject: i.subject.clone(),
                            not_after: meshfleet_mesh::pki::rfc3339(i.not_after),
                        },
                        i.not_after,
                    ));
                }
                Err(e) => f.problems.push(Problem::error(
                    format!("the mesh CA of `{name}` cannot be read: {e}"),
                    "replace `kube-system/cilium-ca` with the fleet's CA (`meshfleet up` delivers it)",
                )),
            }
        }
        Ok(None) => f.problems.push(Problem::error(
            format!("`{name}` has no mesh CA (no `ca.crt` in Secret `kube-system/cilium-ca`)"),
            "Cilium then makes a CA of its own and no peer trusts it; run `meshfleet up` to deliver the fleet's CA, then restart Cilium",
        )),
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }

    match mesh::endpoints(&w).await {
        Ok(e) => f.endpoints = e,
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }
    match mesh::view(&w).await {
        Ok(v) => f.view = Some(v),
        Err(e) => f.problems.push(unreachable(name, w.server(), &e)),
    }
    f
}

/// The peers named in a HelmChartProxy's Cilium values (`clustermesh.config.clusters`, map or
/// list form).
pub fn proxy_peers(proxy: &Value) -> Vec<String> {
    let Some(values) = proxy
        .pointer("/spec/valuesTemplate")
        .and_then(Value::as_str)
        .and_then(|t| serde_saphyr::from_str::<Value>(t).ok())
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = match values.pointer("/clustermesh/config/clusters") {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|e| Some(e.get("name")?.as_str()?.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// The infrastructure object a Cluster refers to (v1beta2 `apiGroup`, or an older
/// `apiVersion`), at the version meshfleet renders it.
fn infra_ref(cluster: &Value, fleet: &str) -> Option<ObjectRef> {
    let r = cluster.pointer("/spec/infrastructureRef")?;
    let kind = r.get("kind")?.as_str()?;
    let name = r.get("name")?.as_str()?;
    let api_version = match (r.get("apiVersion").and_then(Value::as_str), kind) {
        (Some(v), _) => v,
        (None, "AWSCluster") => "infrastructure.cluster.x-k8s.io/v1beta2",
        (None, "GCPCluster") => "infrastructure.cluster.x-k8s.io/v1beta1",
        _ => return None,
    };
    Some(ObjectRef::new(api_version, kind, Some(fleet), name))
}

/// The node CIDR of an infrastructure object: the GCP subnet or the AWS VPC.
fn node_cidr(infra: &Value) -> Option<IpNet> {
    let text = if infra.get("kind").and_then(Value::as_str) == Some("AWSCluster") {
        infra.pointer("/spec/network/vpc/cidrBlock")?.as_str()?
    } else {
        infra
            .pointer("/spec/network/subnets")?
            .as_array()?
            .iter()
            .find_map(|s| s.get("cidrBlock")?.as_str())?
    };
    text.parse().ok()
}

fn covers(ranges: Option<&Value>, src: &IpNet) -> bool {
    ranges
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|r| r.parse::<IpNet>().ok())
        .any(|n| n.contains(src))
}

/// Does the firewall in `infra` (with every GCPCluster of `all` on the same GCP network, whose
/// rules apply network-wide) let `src` reach tcp/`port` on the nodes?
fn opens_tcp(infra: &Value, all: &[Facts], src: &IpNet, port: u16) -> bool {
    let p = i64::from(port);
    if infra.get("kind").and_then(Value::as_str) == Some("AWSCluster") {
        // Peers dial the NodePort on every node, workers included, whose security group
        // takes `additionalNodeIngressRules` only.
        let by_rule = infra
            .pointer("/spec/network/additionalNodeIngressRules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|r| {
                let proto = r.get("protocol").and_then(Value::as_str).unwrap_or("");
                let from = r.get("fromPort").and_then(Value::as_i64).unwrap_or(-1);
                let to = r.get("toPort").and_then(Value::as_i64).unwrap_or(-1);
                (proto == "-1" || (proto.eq_ignore_ascii_case("tcp") && from <= p && p <= to))
                    && covers(r.get("cidrBlocks"), src)
            });
        return by_rule
            || ((30000..=32767).contains(&port)
                && covers(
                    infra.pointer("/spec/network/nodePortIngressRuleCidrBlocks"),
                    src,
                ));
    }
    let net = |i: &Value| {
        (
            i.pointer("/spec/project").cloned(),
            i.pointer("/spec/network/name").cloned(),
        )
    };
    let mine = net(infra);
    std::iter::once(infra)
        .chain(
            all.iter()
                .filter_map(|f| f.infra.as_ref())
                .filter(|i| i.get("kind").and_then(Value::as_str) == Some("GCPCluster"))
                .filter(|i| net(i) == mine),
        )
        .filter_map(|i| {
            i.pointer("/spec/network/firewall/firewallRules")?
                .as_array()
        })
        .flatten()
        .filter(|r| r.get("direction").and_then(Value::as_str) != Some("Egress"))
        .filter(|r| {
            r.get("sourceRanges")
                .is_none_or(|_| covers(r.get("sourceRanges"), src))
        })
        .flat_map(|r| {
            r.get("allowed")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .any(|a| {
            let proto = a.get("IPProtocol").and_then(Value::as_str).unwrap_or("");
            let ports: Vec<&str> = a
                .get("ports")
                .and_then(Value::as_array)
                .map(|x| x.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            (proto.eq_ignore_ascii_case("tcp") || proto.eq_ignore_ascii_case("all"))
                && (ports.is_empty()
                    || ports.iter().any(|x| match x.split_once('-') {
                        Some((lo, hi)) => {
                            lo.trim().parse::<u16>().is_ok_and(|lo| lo <= port)
                                && hi.trim().parse::<u16>().is_ok_and(|hi| port <= hi)
                        }
                        None => x.trim().parse::<u16>() == Ok(port),
                    }))
        })
}

/// What meshfleet itself can tell about why `a` is not connected to `p`, from the objects it
/// read (Cilium's metrics say only that it is not): `(unreachable, why)`.
fn why_not_connected(a: &Facts, p: &Facts, all: &[Facts]) -> Option<(bool, String)> {
    let Some(e) = p.endpoints.as_ref().filter(|e| !e.ips.is_empty()) else {
        return Some((
            true,
            format!(
                "`{}` publishes no clustermesh-apiserver address (Service `kube-system/clustermesh-apiserver`)",
                p.name
            ),
        ));
    };
    if let (Some((x, _)), Some((y, _))) = (&a.ca, &p.ca)
        && x.fingerprint != y.fingerprint
    {
        return Some((
            false,
            format!(
                "`{}` and `{}` hold different mesh CAs (`kube-system/cilium-ca`)",
                a.name, p.name
            ),
        ));
    }
    // A NodePort is dialled on the nodes themselves, so the nodes' firewall decides.
    if (30000..=32767).contains(&e.port)
        && let (Some(src), Some(pi)) = (a.infra.as_ref().and_then(node_cidr), p.infra.as_ref())
        && !opens_tcp(pi, all, &src, e.port)
    {
        let rules = if pi.get("kind").and_then(Value::as_str) == Some("AWSCluster") {
            format!(
                "the `additionalNodeIngressRules` of `{}`'s AWSCluster",
                p.name
            )
        } else {
            format!("the firewall rules of `{}`'s GCP network", p.name)
        };
        return Some((
            true,
            format!(
                "{rules} open no tcp/{} to `{}`'s nodes (`{src}`)",
                e.port, a.name
            ),
        ));
    }
    None
}

/// Does a reason Cilium gives mean the peer's clustermesh-apiserver cannot be reached?
fn is_unreachable(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "2379",
        "firewall",
        "timed out",
        "timeout",
        "connection refused",
        "no route",
        "no such host",
        "unreachable",
        "no clustermesh-apiserver",
    ]
    .iter()
    .any(|k| r.contains(k))
}

fn names(list: &[String]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judge what was read against the plan. Pure.
pub fn evaluate(
    fleet: &str,
    planned: &[Planned],
    max_connected: u32,
    facts: Vec<Facts>,
    now: OffsetDateTime,
) -> MeshReport {
    let mut clusters = Vec::new();
    let mut members: Vec<MeshMember> = Vec::new();
    // Which fleet cluster a Cilium name belongs to, for per-cluster mesh-crate problems.
    let mut by_cilium_name: BTreeMap<String, String> = BTreeMap::new();
    for f in &facts {
        let Some(pl) = planned.iter().find(|p| p.name == f.name) else {
            continue;
        };
        let mut problems = f.problems.clone();
        let expected: Vec<String> = pl.peers.clone();
        let configured: Vec<String> = f
            .secret_peers
            .clone()
            .or_else(|| f.proxy_peers.clone())
            .unwrap_or_default();
        let view = f.view.clone().unwrap_or_default();
        // Cilium's problems are `peer: reason`, or about the cluster as a whole.
        let mut reasons: BTreeMap<String, String> = BTreeMap::new();
        for p in &view.problems {
            match p.split_once(": ") {
                Some((peer, why)) if expected.iter().chain(&configured).any(|x| x == peer) => {
                    reasons.insert(peer.to_string(), why.to_string());
                }
                _ if f.reachable && p.starts_with(mesh::NO_STATUS) => {
                    problems.push(Problem::error(
                        format!("`{}`: {p}", f.name),
                        "`meshfleet up` renders `prometheus.enabled: true`; check the agents with `kubectl -n kube-system get pods -l k8s-app=cilium` in that cluster",
                    ))
                }
                _ if f.reachable => problems.push(Problem::error(
                    format!("`{}`: {p}", f.name),
                    "check Cilium in that cluster (`cilium status`, `cilium clustermesh status`)",
                )),
                _ => {}
            }
        }

        if let Some((cname, cid, _)) = &f.cilium {
            if cname != &f.name {
                problems.push(Problem::error(
                    format!(
                        "Cilium in cluster `{}` calls it `{cname}` (`cilium-config` `cluster-name`)",
                        f.name
                    ),
                    format!(
                        "peers find a cluster by this name; set Cilium's `cluster.name` to `{}` (`meshfleet up` does)",
                        f.name
                    ),
                ));
            }
            match cid {
                Some(id) if *id != pl.mesh_id => problems.push(Problem::warning(
                    format!(
                        "cluster `{}` runs with Cilium cluster ID `{id}`, the plan (`meshfleet.lock`) gives `{}`",
                        f.name, pl.mesh_id
                    ),
                    "an ID cannot change on a running cluster without breaking its identities; keep the lock in step with what runs",
                )),
                None => problems.push(Problem::error(
                    format!("Cilium in `{}` has no `cluster-id` in `cilium-config`", f.name),
                    "a meshed cluster needs a unique ID between 1 and maxConnectedClusters; set `cluster.id` (`meshfleet up` does)",
                )),
                _ => {}
            }
        }

        if f.reachable {
            let missing: Vec<String> = expected
                .iter()
                .filter(|p| !configured.contains(p))
                .cloned()
                .collect();
            if !missing.is_empty() {
                problems.push(Problem::error(
                    format!(
                        "`{}` is not configured to dial {} (`cilium-clustermesh`)",
                        f.name,
                        names(&missing)
                    ),
                    "run `meshfleet up`: it records every peer in the cluster's Cilium values",
                ));
            }
            let extra: Vec<String> = configured
                .iter()
                .filter(|p| !expected.contains(p))
                .cloned()
                .collect();
            if !extra.is_empty() {
                problems.push(Problem::warning(
                    format!(
                        "`{}` is configured to dial {}, not mesh peers in the fleet file",
                        f.name,
                        names(&extra)
                    ),
                    "`meshfleet up` rewrites the Cilium values to the fleet's peers",
                ));
            }
            if let (Some(s), Some(p)) = (&f.secret_peers, &f.proxy_peers)
                && s != p
            {
                problems.push(Problem::warning(
                    format!(
                        "the Cilium values in the management cluster list peers {} but `{}`'s `cilium-clustermesh` Secret lists {}",
                        names(p),
                        f.name,
                        names(s)
                    ),
                    "the add-on provider has not rolled the values out yet; wait, or look at the HelmChartProxy's conditions",
                ));
            }
        }

        let mut peers = Vec::new();
        let all: BTreeSet<&String> = expected.iter().chain(&configured).collect();
        for p in all {
            let connected = view.connected.contains(p);
            let reason = if connected {
                None
            } else {
                Some(
                    reasons
                        .get(p)
                        .cloned()
                        .unwrap_or_else(|| "Cilium reports nothing about this peer".to_string()),
                )
            };
            let is_expected = expected.contains(p);
            let is_configured = configured.contains(p);
            if f.reachable
                && f.view.is_some()
                && !connected
                && is_expected
                && is_configured
                && let Some(why) = &reason
            {
                let derived = facts
                    .iter()
                    .find(|g| &g.name == p)
                    .and_then(|pf| why_not_connected(f, pf, &facts));
                problems.push(if let Some((unreachable, known)) = derived {
                    if unreachable {
                        Problem::error(
                            format!("`{}` cannot reach `{p}`'s clustermesh-apiserver: {known} (Cilium: {why})", f.name),
                            format!(
                                "let `{}`'s nodes reach `{p}` on tcp/32379 (NodePort) or tcp/2379 (LoadBalancer); `meshfleet plan` lists the firewall rules meshfleet renders",
                                f.name
                            ),
                        )
                    } else {
                        Problem::error(
                            format!("`{}` is not connected to `{p}`: {known} (Cilium: {why})", f.name),
                            "run `meshfleet up`: it delivers the fleet's mesh CA to every cluster; then restart Cilium",
                        )
                    }
                } else if is_unreachable(why) {
                    Problem::error(
                        format!("`{}` cannot reach `{p}`'s clustermesh-apiserver: {why}", f.name),
                        format!(
                            "let `{}`'s nodes reach `{p}` on tcp/32379 (NodePort) or tcp/2379 (LoadBalancer); `meshfleet plan` lists the firewall rules meshfleet renders",
                            f.name
                        ),
                    )
                } else {
                    Problem::error(
                        format!("`{}` is not connected to `{p}`: {why}", f.name),
                        format!(
                            "Cilium's metrics do not say why; check that `{}`'s nodes reach `{p}` on tcp/32379 (NodePort) or tcp/2379 (LoadBalancer) (`meshfleet plan` lists the firewall rules meshfleet renders), then see `cilium clustermesh status` in `{}`",
                            f.name, f.name
                        ),
                    )
                });
            }
            peers.push(PeerState {
                name: p.clone(),
                expected: is_expected,
                configured: is_configured,
                connected,
                reason,
            });
        }

        let endpoints: Vec<String> = f
            .endpoints
            .as_ref()
            .map(|e| {
                e.ips
                    .iter()
                    .map(|ip| format!("https://{ip}:{}", e.port))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((cname, cid, cmax)) = &f.cilium {
            by_cilium_name
                .entry(cname.clone())
                .or_insert_with(|| f.name.clone());
            members.push(MeshMember {
                name: cname.clone(),
                cluster_id: cid.unwrap_or(0),
                max_connected_clusters: *cmax,
                ca_fingerprint: f
                    .ca
                    .as_ref()
                    .map(|(c, _)| c.fingerprint.clone())
                    .unwrap_or_default(),
                endpoints: endpoints.clone(),
                cert_not_after: f.ca.iter().map(|(_, t)| *t).collect(),
            });
        }

        clusters.push(ClusterReport {
            name: f.name.clone(),
            cluster_id: f.cilium.as_ref().and_then(|c| c.1),
            cilium_name: f.cilium.as_ref().map(|c| c.0.clone()),
            expected_peers: expected,
            configured_peers: configured,
            connected_peers: view.connected.clone(),
            endpoints,
            peers,
            ca: f.ca.as_ref().map(|(c, _)| c.clone()),
            pod_cidrs: f.pod_cidrs.iter().map(ToString::to_string).collect(),
            problems,
        });
    }

    // A cluster without a CA is reported on its own; counting its empty fingerprint as one
    // more CA would turn that into a misleading mismatch.
    if let Some(fp) = members
        .iter()
        .find(|m| !m.ca_fingerprint.is_empty())
        .map(|m| m.ca_fingerprint.clone())
    {
        for m in &mut members {
            if m.ca_fingerprint.is_empty() {
                m.ca_fingerprint = fp.clone();
            }
        }
    }
    let mut fleet_problems = Vec::new();
    let checks = meshfleet_mesh::check_mesh(
        &members,
        now,
        meshfleet_mesh::time::Duration::days(EXPIRY_WARN_DAYS),
    );
    for c in &checks {
        let own = match c {
            // Fewer than two members when the fleet has more: the missing ones are reported.
            MeshProblem::TooFewClusters { .. } if planned.len() >= 2 => continue,
            MeshProblem::InvalidName { name: cluster, .. }
            | MeshProblem::IdOutOfRange { cluster, .. }
            | MeshProblem::InvalidMaxConnectedClusters { cluster, .. }
            | MeshProblem::NoEndpoint { cluster }
            | MeshProblem::CertificateExpired { cluster, .. }
            | MeshProblem::CertificateExpiringSoon { cluster, .. } => by_cilium_name.get(cluster),
            _ => None,
        };
        let p = Problem::from_mesh(c);
        match own.and_then(|n| clusters.iter_mut().find(|c| &c.name == n)) {
            Some(cr) => cr.problems.push(p),
            None => fleet_problems.push(p),
        }
    }
    for m in &members {
        if m.max_connected_clusters != max_connected
            && meshfleet_mesh::validate::ALLOWED_MAX_CONNECTED_CLUSTERS
                .contains(&m.max_connected_clusters)
            && let Some(cr) = by_cilium_name
                .get(&m.name)
                .and_then(|n| clusters.iter_mut().find(|c| &c.name == n))
        {
            cr.problems.push(Problem::warning(
                format!(
                    "`{}` runs with maxConnectedClusters `{}`, the fleet file says `{max_connected}`",
                    cr.name, m.max_connected_clusters
                ),
                "it cannot change on a running cluster; keep the fleet file in step with what runs",
            ));
        }
    }

    // Pod CIDRs: Cilium routes between clusters by pod address, so ranges must be disjoint.
    for (i, a) in facts.iter().enumerate() {
        for b in facts.iter().skip(i + 1) {
            for x in &a.pod_cidrs {
                for y in &b.pod_cidrs {
                    if x.contains(&y.network()) || y.contains(&x.network()) {
                        fleet_problems.push(Problem::error(
                            format!(
                                "pod CIDRs of `{}` (`{x}`) and `{}` (`{y}`) overlap",
                                a.name, b.name
                            ),
                            "meshed clusters route pods by address, so each needs its own range; `meshfleet plan` allocates disjoint ones, and a running cluster's range cannot change in place",
                        ));
                    }
                }
            }
        }
    }

    for c in &mut clusters {
        c.problems.sort_by_key(|p| p.severity);
    }
    fleet_problems.sort_by_key(|p| p.severity);
    MeshReport {
        fleet: fleet.to_string(),
        clusters,
        problems: fleet_problems,
    }
}

/// The report for people: problems first, then one line per cluster.
pub fn table(r: &MeshReport, colour: bool) -> String {
    let mut out = String::new();
    let mut all: Vec<(&str, &Problem)> = r.problems.iter().map(|p| ("(fleet)", p)).collect();
    for c in &r.clusters {
        all.extend(c.problems.iter().map(|p| (c.name.as_str(), p)));
    }
    all.sort_by_key(|(_, p)| p.severity);
    for (who, p) in &all {
        let label = match (p.severity, colour) {
            (Severity::Error, true) => "\x1b[1;31mERROR\x1b[0m  ",
            (Severity::Error, false) => "ERROR  ",
            (Severity::Warning, true) => "\x1b[1;33mWARNING\x1b[0m",
            (Severity::Warning, false) => "WARNING",
        };
        out.push_str(&format!("{label} {who}: {}\n", p.message));
        if let Some(h) = &p.hint {
            out.push_str(&format!("        hint: {h}\n"));
        }
    }
    if !all.is_empty() {
        out.push('\n');
    }
    let mut t = Table::new([
        "CLUSTER",
        "ID",
        "CONNECTED",
        "NOT CONNECTED",
        "ENDPOINTS",
        "CA",
        "CA EXPIRES",
    ]);
    for c in &r.clusters {
        let down: Vec<&str> = c
            .peers
            .iter()
            .filter(|p| !p.connected)
            .map(|p| p.name.as_str())
            .collect();
        t.row([
            c.name.clone(),
            c.cluster_id.map_or_else(|| "-".into(), |i| i.to_string()),
            format!("{}/{}", c.connected_peers.len(), c.expected_peers.len()),
            if down.is_empty() {
                "-".into()
            } else {
                down.join(",")
            },
            // One address and a count keep the line readable; `-o json` has them all.
            match c.endpoints.as_slice() {
                [] => "-".into(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} (+{})", rest.len()),
            },
            c.ca.as_ref().map_or_else(
                || "-".into(),
                |ca| ca.fingerprint.chars().take(11).collect(),
            ),
            c.ca.as_ref()
                .map_or_else(|| "-".into(), |ca| ca.not_after.clone()),
        ]);
    }
    out.push_str(&t.render(colour));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn planned(names: &[&str]) -> Vec<Planned> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Planned {
                name: n.to_string(),
                mesh_id: i as u32 + 1,
                peers: names
                    .iter()
                    .filter(|x| *x != n)
                    .map(|x| x.to_string())
                    .collect(),
            })
            .collect()
    }

    /// A healthy cluster `name` with ID `id`, pod CIDR `pods`, connected to `peers`.
    fn healthy(name: &str, id: u32, pods: &str, peers: &[&str]) -> Facts {
        let peers: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        Facts {
            name: name.into(),
            exists: true,
            reachable: true,
            cilium: Some((name.into(), Some(id), 255)),
            secret_peers: Some(peers.clone()),
            proxy_peers: Some(peers.clone()),
            view: Some(mesh::MeshView {
                connected: peers,
                problems: Vec::new(),
            }),
            endpoints: Some(mesh::Endpoints {
                ips: vec![format!("10.0.{id}.2")],
                port: 32379,
            }),
            ca: Some((
                CaSummary {
                    fingerprint: "aa:bb".into(),
                    subject: "CN=meshfleet-mesh-ca".into(),
                    not_after: "2030-01-01T00:00:00Z".into(),
                },
                now() + meshfleet_mesh::time::Duration::days(365),
            )),
            pod_cidrs: vec![pods.parse().unwrap()],
            infra: None,
            problems: Vec::new(),
        }
    }

    fn messages(r: &MeshReport) -> Vec<String> {
        r.problems
            .iter()
            .chain(r.clusters.iter().flat_map(|c| c.problems.iter()))
            .map(|p| p.message.clone())
            .collect()
    }

    #[test]
    fn a_healthy_mesh_has_no_problem() {
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![
                healthy("a", 1, "10.64.0.0/16", &["b"]),
                healthy("b", 2, "10.65.0.0/16", &["a"]),
            ],
            now(),
        );
        assert!(messages(&r).is_empty(), "{:?}", messages(&r));
        assert!(!r.has_error());
        assert_eq!(r.clusters[0].connected_peers, ["b"]);
        assert_eq!(r.clusters[0].endpoints, ["https://10.0.1.2:32379"]);
    }

    #[test]
    fn collisions_overlaps_and_expiry() {
        let mut b = healthy("b", 1, "10.64.128.0/17", &["a"]);
        b.ca.as_mut().unwrap().1 = now() + meshfleet_mesh::time::Duration::days(10);
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        let m = messages(&r).join("\n");
        assert!(m.contains("cluster ID `1` is used by `a`, `b`"), "{m}");
        assert!(
            m.contains("pod CIDRs of `a` (`10.64.0.0/16`) and `b` (`10.64.128.0/17`) overlap"),
            "{m}"
        );
        let b = &r.clusters[1];
        let exp = b
            .problems
            .iter()
            .find(|p| p.message.contains("expires in 10 day"))
            .unwrap_or_else(|| panic!("{m}"));
        assert_eq!(exp.severity, Severity::Warning);
        assert!(r.has_error());
    }

    #[test]
    fn only_a_warning_exits_0() {
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a"]);
        b.ca.as_mut().unwrap().1 = now() + meshfleet_mesh::time::Duration::days(29);
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        assert_eq!(messages(&r).len(), 1, "{:?}", messages(&r));
        assert!(!r.has_error());
    }

    #[test]
    fn names_and_ca_mismatch() {
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a"]);
        b.cilium = Some(("a".into(), Some(2), 255));
        b.ca.as_mut().unwrap().0.fingerprint = "cc:dd".into();
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        let m = messages(&r).join("\n");
        assert!(
            m.contains("cluster name `a` is used by more than one"),
            "{m}"
        );
        assert!(m.contains("Cilium in cluster `b` calls it `a`"), "{m}");
        assert!(m.contains("do not share one mesh CA"), "{m}");
    }

    #[test]
    fn unreachable_peers_and_missing_configuration() {
        let mut a = healthy("a", 1, "10.64.0.0/16", &["b", "c"]);
        a.view = Some(mesh::MeshView {
            connected: vec!["c".into()],
            problems: vec!["b: not connected according to Cilium (6 failures on 3 nodes)".into()],
        });
        a.infra = Some(serde_json::json!({"kind": "AWSCluster",
            "spec": {"network": {"vpc": {"cidrBlock": "10.0.0.0/20"}}}}));
        // `b`'s security group opens 32379 to another VPC only.
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a", "c"]);
        b.infra = Some(serde_json::json!({"kind": "AWSCluster",
            "spec": {"network": {"vpc": {"cidrBlock": "10.0.16.0/20"}, "additionalNodeIngressRules": [
                {"protocol": "tcp", "fromPort": 32379, "toPort": 32379, "cidrBlocks": ["10.0.32.0/20"]}]}}}));
        let mut c = healthy("c", 3, "10.66.0.0/16", &["a"]);
        // `c`'s values name `b`, but what its Cilium runs with was never told.
        c.secret_peers = Some(vec!["a".into()]);
        c.proxy_peers = Some(vec!["a".into(), "b".into()]);
        let r = evaluate(
            "f",
            &planned(&["a", "b", "c"]),
            255,
            vec![a.clone(), b.clone(), c],
            now(),
        );
        let ra = &r.clusters[0];
        let p = ra
            .problems
            .iter()
            .find(|p| {
                p.message
                    .contains("cannot reach `b`'s clustermesh-apiserver: the `additionalNodeIngressRules` of `b`'s AWSCluster open no tcp/32379 to `a`'s nodes (`10.0.0.0/20`) (Cilium: not connected according to Cilium (6 failures on 3 nodes))")
            })
            .unwrap_or_else(|| panic!("{:?}", ra.problems));
        assert!(p.hint.as_deref().unwrap().contains("tcp/32379"));
        let pb = ra.peers.iter().find(|p| p.name == "b").unwrap();
        assert!(
            !pb.connected
                && pb
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("according to Cilium")
        );
        // With the port open, meshfleet cannot tell why: it says what Cilium says, and where
        // to look first.
        b.infra.as_mut().unwrap()["spec"]["network"]["additionalNodeIngressRules"][0]["cidrBlocks"] =
            serde_json::json!(["10.0.0.0/14"]);
        let r2 = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![a.clone(), b.clone()],
            now(),
        );
        let p = r2.clusters[0]
            .problems
            .iter()
            .find(|p| {
                p.message
                    .contains("`a` is not connected to `b`: not connected according to Cilium")
            })
            .unwrap_or_else(|| panic!("{:?}", r2.clusters[0].problems));
        assert!(p.hint.as_deref().unwrap().contains("tcp/32379"), "{p:?}");
        // No clustermesh-apiserver address on `b`: that is what is wrong.
        b.endpoints = None;
        let r3 = evaluate("f", &planned(&["a", "b"]), 255, vec![a, b], now());
        assert!(
            r3.clusters[0].problems.iter().any(|p| p
                .message
                .contains("`b` publishes no clustermesh-apiserver address")),
            "{:?}",
            r3.clusters[0].problems
        );
        let c = &r.clusters[2];
        assert!(
            c.problems
                .iter()
                .any(|p| p.message.contains("not configured to dial `b`")),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems.iter().any(|p| p
                .message
                .contains("values in the management cluster list peers")),
            "{:?}",
            c.problems
        );
    }

    #[test]
    fn a_missing_ca_is_not_a_second_ca() {
        let mut b = healthy("b", 2, "10.65.0.0/16", &["a"]);
        b.ca = None;
        b.problems.push(Problem::error("no CA", "deliver it"));
        let r = evaluate(
            "f",
            &planned(&["a", "b"]),
            255,
            vec![healthy("a", 1, "10.64.0.0/16", &["b"]), b],
            now(),
        );
        let m = messages(&r);
        assert_eq!(m, ["no CA"], "{m:?}");
    }

    #[test]
    fn peers_from_either_form_of_the_values() {
        let map = serde_json::json!({"spec": {"valuesTemplate": "clustermesh:\n  config:\n    clusters:\n      b: {port: 32379}\n      a: {port: 32379}\n"}});
        assert_eq!(proxy_peers(&map), ["a", "b"]);
        let list = serde_json::json!({"spec": {"valuesTemplate": "clustermesh:\n  config:\n    clusters:\n    - name: c\n      port: 2379\n"}});
        assert_eq!(proxy_peers(&list), ["c"]);
        assert!(proxy_peers(&serde_json::json!({})).is_empty());
    }
}
