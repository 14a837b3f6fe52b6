//! GCPCluster/AWSCluster: finalizer, provisioning delay, control-plane endpoint, the network
//! check against the simulated GCP project.

use super::*;

pub(super) fn infra_kinds() -> [&'static str; 2] {
    ["GCPCluster", "AWSCluster"]
}

pub(super) fn infrastructure(world: &World, timers: &mut Timers) {
    let api = &world.management;
    for kind in infra_kinds() {
        let Some(t) = ty(api, INFRA, kind).cloned() else {
            continue;
        };
        let fin = format!("{}.infrastructure.cluster.x-k8s.io", kind.to_lowercase());
        for o in api.store.list_shared(&t.key(), None) {
            let k = key_of(&t, &o);
            let id = format!("infra/{}/{}/{}", kind, k.namespace, k.name);
            if deleting(&o) {
                if timers.elapsed(world, &format!("{id}/delete"), delays::INFRA_DELETE) {
                    if kind == "GCPCluster"
                        && let Some((project, rules)) = capg_firewall_rules(&o)
                    {
                        let names: Vec<String> =
                            rules.iter().map(|r| s(r, "/name").to_string()).collect();
                        world.gcp.capg_delete_firewalls(&project, &names);
                    }
                    remove_finalizer(api, &k, &fin);
                }
                continue;
            }
            add_finalizer(api, &k, &fin);
            // CAPG uses a network it does not own only when it exists with its subnets.
            let missing = if kind == "GCPCluster" {
                gcp_network_missing(world, &o)
            } else {
                None
            };
            // CAPG creates its firewall rules in the project once it can use the network.
            if missing.is_none()
                && kind == "GCPCluster"
                && let Some((project, rules)) = capg_firewall_rules(&o)
            {
                world.gcp.capg_insert_firewalls(&project, &rules);
            }
            // Once ready, always ready: timers live in memory and restart with the process.
            let ready = o.pointer("/status/ready").and_then(Value::as_bool) == Some(true)
                || (missing.is_none() && timers.elapsed(world, &id, delays::INFRA));
            let host = endpoint_host(&o, &k);
            if ready
                && o.pointer("/spec/controlPlaneEndpoint/host")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                update(api, &k, |v| {
                    v["spec"]["controlPlaneEndpoint"] = json!({"host": host, "port": 6443});
                });
            }
            let mut status = o.get("status").cloned().unwrap_or_else(|| json!({}));
            status["ready"] = json!(ready);
            let (reason, msg) = match (&missing, ready) {
                (_, true) => ("Provisioning", String::new()),
                (Some(why), false) => ("NetworkNotFound", why.clone()),
                (None, false) => (
                    "Provisioning",
                    "creating network, subnets, firewall rules and the control-plane load balancer"
                        .to_string(),
                ),
            };
            if let Some(why) = &missing
                && !ready
                && s(&o, "/status/conditions/0/reason") != "NetworkNotFound"
            {
                event(api, &o, true, "NetworkNotFound", why);
            }
            status["conditions"] = json!([
                cond1("Ready", ready, reason, &msg),
                cond1("NetworkReady", ready, reason, &msg),
            ]);
            if kind == "AWSCluster" {
                status["initialization"] = json!({"provisioned": ready});
                // CAPA creates the cluster's own VPC (render leaves `vpc.id` unset); the
                // interconnect steps attach to it and the network model reads it.
                if ready {
                    world.aws.capa_vpc(
                        s(&o, "/spec/region"),
                        &format!("{}/{}", k.namespace, k.name),
                        s(&o, "/spec/network/vpc/cidrBlock"),
                    );
                }
            }
            if ready {
                status["failureDomains"] = if kind == "GCPCluster" {
                    let region = s(&o, "/spec/region");
                    json!({format!("{region}-a"): {"controlPlane": true}, format!("{region}-b"): {"controlPlane": true}})
                } else {
                    let region = s(&o, "/spec/region");
                    json!({format!("{region}a"): {"controlPlane": true}, format!("{region}b"): {"controlPlane": true}})
                };
                if kind == "GCPCluster" {
                    status["network"] = json!({"selfLink": format!("https://www.googleapis.com/compute/v1/projects/{}/global/networks/{}", s(&o, "/spec/project"), s(&o, "/spec/network/name"))});
                }
            }
            set_status(api, &k, status);
        }
    }
}

/// Why CAPG cannot use a GCPCluster's network: the network or one of its subnets does not exist
/// in the simulated project (see [`crate::gcp`]).
pub(super) fn gcp_network_missing(world: &World, o: &Value) -> Option<String> {
    let subnets: Vec<(String, String)> = o
        .pointer("/spec/network/subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| (s(x, "/name").to_string(), s(x, "/region").to_string()))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    let network = match s(o, "/spec/network/name") {
        "" => "default",
        n => n,
    };
    world
        .gcp
        .network_missing(s(o, "/spec/project"), network, &subnets)
}

pub(super) fn endpoint_host(o: &Value, k: &Key) -> String {
    // Stable pseudo-public address per infra object (documentation range 198.51.100.0/24).
    let h = k
        .name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    let _ = o;
    format!("198.51.100.{}", 1 + h % 250)
}

/// The infrastructure object of a Cluster (key, object), if it exists.
pub(crate) fn cluster_infra(api: &Api, cluster: &Value) -> Option<(Key, Value)> {
    resolve(
        api,
        cluster.pointer("/spec/infrastructureRef")?,
        ns_of(cluster),
    )
}

/// The firewall rules CAPG creates for a GCPCluster, in the compute API's shape, with the
/// project they go to; `None` while no Cluster owns it (CAPG waits for the owner) or on a
/// shared VPC (`spec.network.hostProject` naming another project: CAPG skips firewall
/// management, `cloud/scope/cluster.go`@v1.12.0).
///
/// From kubernetes-sigs/cluster-api-provider-gcp:`cloud/scope/firewall.go`@v1.12.0: unless
/// `spec.network.firewall.defaultRulesManagement` is `Unmanaged`, `allow-<cluster>-healthchecks`
/// (tcp/6443 from Google's health checkers to `<cluster>-control-plane`) and
/// `allow-<cluster>-cluster` (everything between `<cluster>-control-plane` and `<cluster>-node`);
/// then each of `firewallRules`, its name prefixed with `<cluster>-` unless it already starts
/// with the cluster name (no name: `<cluster>-<direction>`), cut to 63 characters without a
/// trailing `-`, protocols lower-cased, direction upper-cased.
pub(crate) fn capg_firewall_rules(o: &Value) -> Option<(String, Vec<Value>)> {
    let cluster = o
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| s(r, "/kind") == "Cluster")
        .map(|r| s(r, "/name").to_string())?;
    let project = s(o, "/spec/project").to_string();
    if let Some(host) = o
        .pointer("/spec/network/hostProject")
        .and_then(Value::as_str)
        && host != project
    {
        return None;
    }
    let network = match s(o, "/spec/network/name") {
        "" => "default",
        n => n,
    };
    let link = format!("projects/{project}/global/networks/{network}");
    let mut rules = Vec::new();
    if s(o, "/spec/network/firewall/defaultRulesManagement") != "Unmanaged" {
        rules.push(
            json!({"name": format!("allow-{cluster}-healthchecks"), "network": link,
            "allowed": [{"IPProtocol": "TCP", "ports": ["6443"]}], "direction": "INGRESS",
            "sourceRanges": ["35.191.0.0/16", "130.211.0.0/22"],
            "targetTags": [format!("{cluster}-control-plane")]}),
        );
        rules.push(
            json!({"name": format!("allow-{cluster}-cluster"), "network": link,
            "allowed": [{"IPProtocol": "all"}], "direction": "INGRESS",
            "sourceTags": [format!("{cluster}-control-plane"), format!("{cluster}-node")],
            "targetTags": [format!("{cluster}-control-plane"), format!("{cluster}-node")]}),
        );
    }
    for r in o
        .pointer("/spec/network/firewall/firewallRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let lower = |k: &str| -> Vec<Value> {
            r.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|a| {
                    let mut x = json!({"IPProtocol": s(a, "/IPProtocol").to_lowercase()});
                    if let Some(p) = a.get("ports") {
                        x["ports"] = p.clone();
                    }
                    x
                })
                .collect()
        };
        let direction = s(r, "/direction").to_uppercase();
        let mut name = match s(r, "/name") {
            "" => format!("{cluster}-{}", direction.to_lowercase()),
            n if n.starts_with(&cluster) => n.to_string(),
            n => format!("{cluster}-{n}"),
        };
        name.truncate(63);
        let name = name.strip_suffix('-').unwrap_or(&name).to_string();
        let mut rule = json!({"name": name, "network": link, "direction": direction,
            "allowed": lower("allowed"), "denied": lower("denied"),
            "disabled": false,
            "description": match s(r, "/description") { "" => "Created by Cluster API GCP Provider", d => d }});
        // CAPG sends `priority` as is; Go drops a zero, and GCP then applies 1000.
        if let Some(p) = r
            .get("priority")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0)
        {
            rule["priority"] = json!(p);
        }
        for k in ["sourceRanges", "targetTags", "sourceTags"] {
            if let Some(v) = r.get(k) {
                rule[k] = v.clone();
            }
        }
        rules.push(rule);
    }
    Some((project, rules))
}
