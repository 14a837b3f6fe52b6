//! Rolling replacement of machines, shared by the TalosControlPlane and MachineDeployment
//! reconcilers, and the simulator's own fault switch for machines that never boot.
//!
//! What makes a machine outdated, as the real controllers decide it:
//! - CACPPT: a machine whose Kubernetes version, infrastructure template (the
//!   `cluster.x-k8s.io/cloned-from-name` annotation) or Talos config differs from the
//!   TalosControlPlane's (`MachinesNeedingRollout`,
//!   siderolabs/cluster-api-control-plane-provider-talos:`controllers/controlplane.go`@v0.5.12).
//! - Cluster API MachineDeployment: a machine whose `spec.version`, `infrastructureRef` or
//!   bootstrap `configRef` template differs from the deployment's template
//!   (`MachineTemplateUpToDate`,
//!   kubernetes-sigs/cluster-api:`core/reconcilers/machinedeployment/mdutil/util.go`@v1.14.0).
//!
//! Cluster API copies the template a machine was made from into that annotation on the
//! infrastructure machine; the simulator has no infrastructure machine objects, so it keeps the
//! annotations on the Machine itself (and one more for the bootstrap template), set once at
//! creation: changing the owner's template later makes the machine outdated, never "new".

use super::*;

/// The infrastructure machine template a machine was cloned from (Cluster API's annotation).
pub(crate) const CLONED_FROM_NAME: &str = "cluster.x-k8s.io/cloned-from-name";
/// The bootstrap config template a worker machine was made from (simulator bookkeeping).
pub(crate) const BOOTSTRAP_FROM_NAME: &str = "sim.meshfleet.io/bootstrap-template";

/// Name of the ConfigMap (in a cluster's namespace) that switches the simulator's faults on.
pub const FAULTS_CONFIGMAP: &str = "meshfleet-sim-faults";
/// Key of [`FAULTS_CONFIGMAP`]: cluster names (comma or space separated) whose new machines
/// never finish booting (a broken image): the instance stays `Provisioning`, no Node ever
/// registers, so a rollout of that cluster cannot complete. Deleting the key (or the
/// ConfigMap) heals it: the machines boot on the next pass.
pub const FAULT_MACHINES_NEVER_BOOT: &str = "machinesNeverBoot";

/// Whether new machines of `cluster` (in `ns`) are made never to boot.
pub(crate) fn never_boots(api: &Api, ns: &str, cluster: &str) -> bool {
    let key = Key::new("/configmaps", ns, FAULTS_CONFIGMAP);
    api.store.get(&key).is_some_and(|cm| {
        s(&cm, &format!("/data/{FAULT_MACHINES_NEVER_BOOT}"))
            .split([',', ' ', '\n'])
            .any(|n| n.trim() == cluster)
    })
}

/// Record on a new Machine the templates it is made from.
pub(crate) fn stamp(m: &mut Value, infra_template: &str, bootstrap_template: Option<&str>) {
    let a = &mut m["metadata"]["annotations"];
    if !a.is_object() {
        *a = json!({});
    }
    a[CLONED_FROM_NAME] = json!(infra_template);
    if let Some(b) = bootstrap_template {
        a[BOOTSTRAP_FROM_NAME] = json!(b);
    }
}

fn annotation<'a>(m: &'a Value, key: &str) -> Option<&'a str> {
    m.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Whether a machine matches the wanted version and templates. A machine without the
/// annotation (made before the simulator recorded it) counts as matching its template, so an
/// upgrade of the simulator does not roll every machine.
pub(crate) fn up_to_date(
    m: &Value,
    version: &str,
    infra_template: &str,
    bootstrap_template: Option<&str>,
) -> bool {
    s(m, "/spec/version") == version
        && annotation(m, CLONED_FROM_NAME).is_none_or(|t| t == infra_template)
        && match (bootstrap_template, annotation(m, BOOTSTRAP_FROM_NAME)) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
}

/// An `intstr` of a rolling-update field against `replicas`: an integer as is, a percentage
/// rounded up (`maxSurge`) or down (`maxUnavailable`), as Cluster API scales them.
pub(crate) fn int_or_percent(
    v: Option<&Value>,
    replicas: i64,
    default: i64,
    round_up: bool,
) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default).max(0),
        Some(Value::String(p)) => match p.strip_suffix('%').and_then(|x| x.parse::<i64>().ok()) {
            Some(pct) => {
                let x = pct.max(0) * replicas;
                if round_up { (x + 99) / 100 } else { x / 100 }
            }
            None => default,
        },
        _ => default,
    }
}

/// The oldest machine of `ms` by creation time (the one a rollout replaces first).
pub(crate) fn oldest<'a>(ms: &[&'a Value]) -> Option<&'a Value> {
    ms.iter()
        .min_by_key(|m| {
            (
                s(m, "/metadata/creationTimestamp").to_string(),
                name_of(m).to_string(),
            )
        })
        .copied()
}
