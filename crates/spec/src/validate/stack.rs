//! Rules the real stack imposes beyond the fleet file's own consistency: known releases, the
//! Talos patch form the bootstrap provider can decode, and what the clouds' controllers can
//! deliver (REAL-STACK.md).

use crate::diag::{Diagnostic, Report};
use crate::model::{ApiserverService, Fleet, PatchFormat, Provider, Version};
use crate::releases::{Release, known_kubernetes, known_talos};

/// Apply the stack rules. Paths are set; positions are filled by the caller.
pub(crate) fn check(r: &mut Report, fleet: &Fleet) {
    let v = &fleet.spec.versions;
    let talos = Version::parse(&v.talos);
    if let Some(t) = talos {
        release(
            r,
            "spec.versions.talos",
            "Talos",
            &v.talos,
            known_talos(t),
            "https://github.com/siderolabs/talos/releases",
        );
    }
    if let Some(k) = Version::parse(&v.kubernetes) {
        release(
            r,
            "spec.versions.kubernetes",
            "Kubernetes",
            &v.kubernetes,
            known_kubernetes(k),
            "https://kubernetes.io/releases/",
        );
    }
    patch_format(r, fleet, talos);
    gcp_load_balancer(r, fleet);
    gcp_names(r, fleet);
    deployment_names(r, fleet);
}

/// Workers get one MachineDeployment per zone, named `<cluster>-workers-<pool>-<zone suffix>`
/// (the zone without its region, e.g. `b` for `europe-west1-b`), and Cluster API copies that
/// name into the label `cluster.x-k8s.io/deployment-name`, whose values are at most 63
/// characters.
fn deployment_names(r: &mut Report, fleet: &Fleet) {
    for (i, c) in fleet.spec.clusters.iter().enumerate() {
        let suffix = c
            .zones
            .iter()
            .map(|z| {
                z.strip_prefix(c.region.as_str())
                    .map(|s| s.trim_start_matches('-'))
                    .filter(|s| !s.is_empty())
                    .unwrap_or(z)
            })
            .max_by_key(|s| s.len())
            .unwrap_or("");
        for (p, pool) in c.worker_pools.iter().enumerate() {
            let name = format!("{}-workers-{}-{suffix}", c.name, pool.name);
            if name.len() > 63 {
                r.push(
                    Diagnostic::error(
                        format!("spec.clusters[{i}].workerPools[{p}].name"),
                        format!("the pool's MachineDeployment name `{name}` is {} characters, more than the 63 a label value allows", name.len()),
                    )
                    .with_value(&pool.name)
                    .with_hint(format!("shorten the pool name to at most {} characters", 63usize.saturating_sub(name.len() - pool.name.len()))),
                );
            }
        }
    }
}

fn release(r: &mut Report, path: &str, what: &str, text: &str, found: Release, list: &str) {
    let (message, newest) = match found {
        Release::Known => return,
        Release::UnknownPatch { newest } => (
            format!(
                "{what} `{text}` is newer than the newest v{}.{} release meshfleet knows",
                newest.major, newest.minor
            ),
            newest,
        ),
        Release::UnknownLine { newest } => (
            format!("{what} `{text}` is from a line with no release meshfleet knows"),
            newest,
        ),
    };
    r.push(
        Diagnostic::warning(path, message)
            .with_value(text)
            .with_hint(format!(
                "the newest known release is `v{newest}`; check that `{text}` exists ({list}) before rolling it out"
            )),
    );
}

/// The multi-document patch form exists only from Talos 1.14, and the released bootstrap
/// provider cannot decode it: CABPT v0.6.12 vendors `talos/pkg/machinery` v1.13.0
/// (siderolabs/cluster-api-bootstrap-provider-talos:go.mod@v0.6.12), whose config loader has
/// no `Kube*Config` documents, so `failure loading StrategicPatch`
/// (`controllers/talosconfig_controller.go`@v0.6.12).
fn patch_format(r: &mut Report, fleet: &Fleet, talos: Option<Version>) {
    if fleet.spec.talos.patch_format != PatchFormat::MultiDocument {
        return;
    }
    let path = "spec.talos.patchFormat";
    match talos {
        Some(t) if t.line() < (1, 14) => r.push(
            Diagnostic::error(path, format!("the multi-document patch form needs Talos v1.14 or newer, and the fleet runs `{}`", fleet.spec.versions.talos))
                .with_value("multiDocument")
                .with_hint("remove `patchFormat` (the v1alpha1 form works for every Talos line)"),
        ),
        Some(_) => r.push(
            Diagnostic::warning(path, "the Talos bootstrap provider v0.6.12 cannot decode multi-document patches (it is built on Talos machinery v1.13)")
                .with_value("multiDocument")
                .with_hint("use it only with a bootstrap provider built on Talos machinery v1.14 or newer; `v1alpha1` works with v0.6.12"),
        ),
        None => {}
    }
}

/// A LoadBalancer clustermesh-apiserver needs a cloud controller manager that creates load
/// balancers. For GCP, kubernetes/cloud-provider-gcp ships no Helm chart that CAAPH could
/// install: its only deployable form is a kustomize package whose DaemonSet leaves
/// `args: []` "to be replaced by tooling" (`deploy/packages/default/manifest.yaml`@v36.3.8).
fn gcp_load_balancer(r: &mut Report, fleet: &Fleet) {
    let mesh = &fleet.spec.mesh;
    if !mesh.enabled || mesh.apiserver_service != ApiserverService::LoadBalancer {
        return;
    }
    let gcp: Vec<&str> = fleet
        .spec
        .clusters
        .iter()
        .filter(|c| c.provider == Provider::Gcp)
        .map(|c| c.name.as_str())
        .collect();
    if gcp.is_empty() {
        return;
    }
    let names = gcp
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    r.push(
        Diagnostic::error("spec.mesh.apiserverService", format!("a LoadBalancer clustermesh-apiserver needs a GCP cloud controller manager on {names}, and none can be delivered"))
            .with_value("LoadBalancer")
            .with_hint("use `NodePort` (kubernetes/cloud-provider-gcp publishes no Helm chart, only a kustomize package whose arguments are left to tooling)"),
    );
}

/// GCE resource names start with a letter (`[a-z]([-a-z0-9]*[a-z0-9])?`), and CAPG names the
/// cluster's firewall rules, instances and load balancer after the cluster
/// (`cloud/scope/firewall.go`@v1.12.0 prefixes rule names with it).
fn gcp_names(r: &mut Report, fleet: &Fleet) {
    for (i, c) in fleet.spec.clusters.iter().enumerate() {
        if c.provider == Provider::Gcp && c.name.starts_with(|ch: char| ch.is_ascii_digit()) {
            r.push(
                Diagnostic::error(format!("spec.clusters[{i}].name"), format!("GCP cluster `{}` starts with a digit", c.name))
                    .with_value(&c.name)
                    .with_hint(format!("GCE names start with a letter, and CAPG names the cluster's resources after it; e.g. `c{}`", c.name)),
            );
        }
    }
}
