//! Cloud controller managers in workload clusters, installed through CAAPH like any chart.
//!
//! A kubelet started with `--cloud-provider=external` registers its Node without
//! `spec.providerID` and with the taint `node.cloudprovider.kubernetes.io/uninitialized`
//! (kubernetes/kubernetes:`pkg/kubelet/kubelet_node_status.go`); the cloud node controller of a
//! CCM initialises only Nodes carrying that taint: it sets the provider ID and the addresses
//! from the cloud, then removes the taint
//! (kubernetes/cloud-provider:`controllers/node/node_controller.go`). A kubelet without the
//! flag never gets a provider ID (no in-tree cloud providers remain), and Cluster API matches
//! Machines to Nodes only by provider ID
//! (kubernetes-sigs/cluster-api:`core/reconcilers/machine/machine_controller_noderef.go`@v1.14.0).
//! The service controller, when a CCM has one, gives `LoadBalancer` Services their
//! `status.loadBalancer.ingress`.

use serde_json::{Value, json};

use crate::Api;
use crate::controllers::{create, name_of, s, update};
use crate::store::{Key, now_rfc3339};

/// The taint a kubelet with `--cloud-provider=external` registers its Node with.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";

/// Label the simulated CCM Pods carry: the chart name, as the charts' own
/// `app.kubernetes.io/name` selector labels do.
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// What one CCM chart runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ccm {
    /// The chart name in a HelmChartProxy's `chartName`.
    pub chart: &'static str,
    /// The infrastructure kinds (`GCPCluster`, `AWSCluster`) whose instances it can describe.
    pub clouds: &'static [&'static str],
    /// Whether it runs the cloud node controller (provider IDs, addresses, the taint).
    pub nodes: bool,
    /// Whether it runs the service controller (load balancers).
    pub services: bool,
}

/// The CCM charts the simulator knows.
pub const CHARTS: &[Ccm] = &[
    // siderolabs/talos-cloud-controller-manager: `charts/talos-cloud-controller-manager/values.yaml`@v1.9.1
    // enables `cloud-node` (and `node-csr-approval`) and supports only `cloud-node`,
    // `cloud-node-lifecycle`, `node-csr-approval` and `node-ipam-controller`: no service or
    // route controller. It takes the provider ID from Talos's platform metadata on any
    // platform (`pkg/talos/instances.go`@v1.9.1).
    Ccm {
        chart: "talos-cloud-controller-manager",
        clouds: &["GCPCluster", "AWSCluster"],
        nodes: true,
        services: false,
    },
    // kubernetes/cloud-provider-aws: `charts/aws-cloud-controller-manager` runs the AWS cloud
    // provider's node, node-lifecycle, service and route controllers; on AWS only.
    Ccm {
        chart: "aws-cloud-controller-manager",
        clouds: &["AWSCluster"],
        nodes: true,
        services: true,
    },
];

/// The CCM of a chart name, if the simulator knows it.
pub fn by_chart(chart: &str) -> Option<&'static Ccm> {
    CHARTS.iter().find(|c| c.chart == chart)
}

/// Install a CCM release: its Pod in the release namespace (Running, on the host network),
/// annotated with the controllers it runs: talos-ccm's `enabledControllers` value can switch
/// its node controller off, and then it does nothing the simulator models.
pub fn install(w: &Api, ccm: &Ccm, release: &str, ns: &str, values: &Value) {
    let ns = if ns.is_empty() { "kube-system" } else { ns };
    let controllers: Vec<String> = values
        .get("enabledControllers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| vec!["cloud-node".into()]);
    let name = format!("{release}-0");
    let now = now_rfc3339();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
            "labels": {NAME_LABEL: ccm.chart, "app.kubernetes.io/instance": release},
            "annotations": {"meshfleet.io/sim-ccm-controllers": controllers.join(",")}},
        "spec": {"hostNetwork": true, "containers": [{"name": ccm.chart, "image": ccm.chart}]},
        "status": {"phase": "Running", "startTime": now,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
    let key = Key::new("/pods", ns, &name);
    create(w, &key, pod);
    let ann = controllers.join(",");
    update(w, &key, |p| {
        p["metadata"]["annotations"]["meshfleet.io/sim-ccm-controllers"] = json!(ann);
    });
}

/// The CCMs running in a workload cluster (their Pods), with whether each runs its node
/// controller.
fn running(w: &Api) -> Vec<(&'static Ccm, bool)> {
    let mut out = Vec::new();
    for p in w.store.list("/pods", None).0 {
        let Some(c) = by_chart(s(&p, "/metadata/labels/app.kubernetes.io~1name")) else {
            continue;
        };
        if s(&p, "/status/phase") != "Running" {
            continue;
        }
        let ctrl = s(
            &p,
            "/metadata/annotations/meshfleet.io~1sim-ccm-controllers",
        );
        let nodes =
            c.nodes && (ctrl.is_empty() || ctrl.split(',').any(|x| x == "cloud-node" || x == "*"));
        out.push((c, nodes));
    }
    out
}

/// Whether a CCM in `w` initialises Nodes of `cloud` (an infrastructure kind).
pub fn initialises_nodes(w: &Api, cloud: &str) -> bool {
    running(w)
        .iter()
        .any(|(c, nodes)| *nodes && c.clouds.contains(&cloud))
}

/// Whether a CCM in `w` runs a service controller for `cloud`.
pub fn serves_load_balancers(w: &Api, cloud: &str) -> bool {
    running(w)
        .iter()
        .any(|(c, _)| c.services && c.clouds.contains(&cloud))
}

/// Give every `LoadBalancer` Service of `w` an ingress when a CCM with a service controller for
/// `cloud` runs there. The AWS one provisions an ELB and reports its DNS name, not an address
/// (kubernetes/cloud-provider-aws: `toStatus`/`v2toStatus` in `pkg/providers/v1/aws.go` fill
/// `LoadBalancerIngress.Hostname`).
pub fn reconcile_services(w: &Api, cloud: &str, region: &str) {
    if !serves_load_balancers(w, cloud) {
        return;
    }
    for svc in w.store.list("/services", None).0 {
        if s(&svc, "/spec/type") != "LoadBalancer"
            || svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        {
            continue;
        }
        let ns = s(&svc, "/metadata/namespace").to_string();
        let uid = s(&svc, "/metadata/uid").replace('-', "");
        let id: String = uid.chars().take(32).collect();
        // Only AWS's CCM has a service controller here (see [`CHARTS`]).
        let ingress = json!([{"hostname": format!("a{id}-{}.elb.{region}.amazonaws.com", &id[..id.len().min(10)])}]);
        update(w, &Key::new("/services", &ns, name_of(&svc)), |v| {
            v["status"]["loadBalancer"]["ingress"] = ingress.clone();
        });
    }
}
