//! Machine: Pending → Provisioning → Provisioned → Running, and the workload Nodes.

use super::*;

pub(super) fn node_ip(infra: Option<&Value>, index: u32) -> String {
    let cidr = infra.and_then(mesh::node_cidr);
    match cidr {
        Some(ipnet::IpNet::V4(n)) => {
            let base = u32::from(n.network());
            std::net::Ipv4Addr::from(base + 10 + index % 4000).to_string()
        }
        _ => format!("10.250.{}.{}", index / 250, 10 + index % 240),
    }
}

pub(super) fn machines(world: &World, timers: &mut Timers) {
    let api = &world.management;
    let Some(t) = ty(api, CAPI, "Machine").cloned() else {
        return;
    };
    let all = api.store.list_shared(&t.key(), None);
    for (i, m) in all.iter().enumerate() {
        let k = key_of(&t, m);
        let id = format!("machine/{}/{}", k.namespace, k.name);
        let cluster = cluster_of(api, m);
        let wl_key = cluster
            .as_ref()
            .map(|c| format!("{}/{}", ns_of(c), name_of(c)));
        let workload = wl_key.as_deref().and_then(|w| world.workload(w));
        // The cluster does not answer (a simulated outage): Cluster API cannot read its Nodes,
        // keeps the Machine's last known node conditions through the remote-conditions grace
        // period, then reports them Unknown (`setNodeHealthyAndReadyConditions`,
        // machine_controller_status.go@v1.14.0). A deleting Machine waits with the rest.
        if let Some(lost) = wl_key
            .as_deref()
            .and_then(|w| crate::outage::lost(world, w))
        {
            if lost.past(world, crate::outage::REMOTE_CONDITIONS_GRACE) {
                connection_down(api, &k, m, &lost);
            }
            continue;
        }
        if deleting(m) {
            if let Some(w) = &workload {
                let nk = Key::new("/nodes", "", s(m, "/status/nodeRef/name"));
                if !nk.name.is_empty() {
                    delete(w, &nk);
                }
            }
            let mut st = m.get("status").cloned().unwrap_or(json!({}));
            st["phase"] = json!("Deleting");
            set_status(api, &k, st);
            if timers.elapsed(world, &format!("{id}/delete"), delays::MACHINE_DELETE) {
                remove_finalizer(api, &k, "machine.cluster.x-k8s.io");
            }
            continue;
        }
        let Some(cluster) = cluster else { continue };
        let infra = cluster_infra(api, &cluster);
        let is_cp = m
            .pointer("/metadata/labels/cluster.x-k8s.io~1control-plane")
            .is_some();
        let cp = cluster
            .pointer("/spec/controlPlaneRef")
            .and_then(|r| resolve(api, r, ns_of(&cluster)));
        let cp_bootstrapped = cp.as_ref().is_some_and(|(_, v)| {
            v.pointer("/status/bootstrapped").and_then(Value::as_bool) == Some(true)
        });
        let cp_initialized = cp.as_ref().is_some_and(|(_, v)| {
            v.pointer("/status/initialized").and_then(Value::as_bool) == Some(true)
        });
        // Bootstrap data: the first control-plane machine gets it at once, others once etcd runs;
        // never while CABPT cannot generate it (see `bootstrap.rs`).
        let first_cp = is_cp && !cp_initialized;
        let talos_cfg = machine_talos_config(api, m);
        let data_ready = talos_cfg
            .as_ref()
            .is_some_and(|t| t.pointer("/status/ready").and_then(Value::as_bool) == Some(true));
        let has_bootstrap = (first_cp || cp_initialized) && data_ready;
        let g = generation(m);
        let infra_obj = infra.as_ref().map(|(_, v)| v);
        let infra_kind = infra_obj.map(|v| s(v, "/kind")).unwrap_or("");
        let infra_machine_kind = s(m, "/spec/infrastructureRef/kind").to_string();
        // NodeReady/NodeHealthy before a Node matches, with Cluster API's messages
        // (kubernetes-sigs/cluster-api:`core/reconcilers/machine/machine_controller_status.go`@v1.14.0,
        // `setNodeHealthyAndReadyConditions`).
        let cluster_provisioned = cluster
            .pointer("/status/initialization/infrastructureProvisioned")
            .and_then(Value::as_bool)
            == Some(true);
        let waiting_node = |provider_id: &str| {
            if !cluster_provisioned {
                "Waiting for Cluster status.initialization.infrastructureProvisioned to be true"
                    .to_string()
            } else if !cp_initialized {
                "Waiting for Cluster control plane to be initialized".to_string()
            } else if provider_id.is_empty() {
                format!("Waiting for {infra_machine_kind} to report spec.providerID")
            } else {
                format!("Waiting for a Node with spec.providerID {provider_id} to exist")
            }
        };
        if !infra_ready(infra.as_ref()) || !has_bootstrap {
            let why = if !infra_ready(infra.as_ref()) {
                "waiting for the cluster infrastructure"
            } else {
                "waiting for the control plane to be initialized"
            };
            // BootstrapConfigReady mirrors the TalosConfig's Ready condition
            // (`setBootstrapReadyCondition`, machine_controller_status.go@v1.14.0).
            let boot = match &talos_cfg {
                None => (
                    Some(false),
                    "BootstrapConfigDoesNotExist".to_string(),
                    "TalosConfig does not exist".to_string(),
                ),
                Some(tc) if !data_ready => {
                    let ready = tc
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().find(|c| s(c, "/type") == "Ready"));
                    match ready {
                        Some(c) => (
                            Some(false),
                            s(c, "/reason").to_string(),
                            s(c, "/message").to_string(),
                        ),
                        None => (
                            Some(false),
                            "NotReady".to_string(),
                            "TalosConfig status.initialization.dataSecretCreated is false"
                                .to_string(),
                        ),
                    }
                }
                Some(_) => (Some(false), "NotReady".to_string(), why.to_string()),
            };
            let node = waiting_node("");
            set_status(
                api,
                &k,
                json!({"phase": "Pending", "conditions": machine_conditions(g,
                    (boot.0, &boot.1, &boot.2),
                    (Some(false), "NotReady", why),
                    (None, "InspectionFailed", &node),
                    (None, "InspectionFailed", &node))}),
            );
            continue;
        }
        // CAPA resolves the AMI its AWSMachineTemplate looks up and the instance profile
        // before RunInstances; either missing fails the instance with `InstanceReady` False,
        // reason `InstanceProvisionFailed`, and the Machine waits on its infrastructure
        // (cluster-api-provider-aws:`pkg/cloud/services/ec2/instances.go` CreateInstance and
        // `controllers/awsmachine_controller.go`@v2.11.1). A machine already running keeps running.
        if infra_kind == "AWSCluster"
            && !matches!(s(m, "/status/phase"), "Provisioned" | "Running")
            && let Some(why) = machine_template(api, m).and_then(|t| {
                world.aws.capa_machine_missing(
                    infra_obj.map(|v| s(v, "/spec/region")).unwrap_or(""),
                    &t["spec"]["template"]["spec"],
                )
            })
        {
            let node = waiting_node("");
            set_status(
                api,
                &k,
                json!({"phase": "Provisioning", "conditions": machine_conditions(g,
                    (Some(true), "Ready", ""),
                    (Some(false), "InstanceProvisionFailed", &why),
                    (None, "InspectionFailed", &node),
                    (None, "InspectionFailed", &node))}),
            );
            continue;
        }
        let already_up = matches!(s(m, "/status/phase"), "Provisioned" | "Running");
        // The simulator's fault switch: the instance never finishes booting (see `rollout.rs`).
        if !already_up && super::rollout::never_boots(api, ns_of(m), name_of(&cluster)) {
            let node = waiting_node("");
            let why = format!(
                "{infra_machine_kind} status.initialization.provisioned is false: the instance does not finish booting (simulated fault `{}` in ConfigMap `{}`)",
                super::rollout::FAULT_MACHINES_NEVER_BOOT,
                super::rollout::FAULTS_CONFIGMAP
            );
            set_status(
                api,
                &k,
                json!({"phase": "Provisioning", "conditions": machine_conditions(g,
                    (Some(true), "Ready", ""),
                    (Some(false), "NotReady", &why),
                    (None, "InspectionFailed", &node),
                    (None, "InspectionFailed", &node))}),
            );
            continue;
        }
        let booted = already_up || timers.elapsed(world, &id, delays::MACHINE);
        let provider_id = if infra_kind == "AWSCluster" {
            // CAPA: `aws:///<availability zone>/<instance id>`
            // (kubernetes-sigs/cluster-api-provider-aws:`pkg/cloud/scope/providerid.go`@v2.11.1).
            format!(
                "aws:///{}a/i-{:017x}",
                infra_obj.map(|v| s(v, "/spec/region")).unwrap_or(""),
                name_of(m)
                    .bytes()
                    .fold(1u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64))
                    & 0xfffffffffffffff
            )
        } else {
            // CAPG: `gce://<project>/<zone>/<instance>`
            // (kubernetes-sigs/cluster-api-provider-gcp:`cloud/providerid/providerid.go`@v1.12.0).
            format!(
                "gce://{}/{}-a/{}",
                infra_obj.map(|v| s(v, "/spec/project")).unwrap_or(""),
                infra_obj.map(|v| s(v, "/spec/region")).unwrap_or(""),
                name_of(m)
            )
        };
        if !booted {
            let node = waiting_node("");
            set_status(
                api,
                &k,
                json!({"phase": "Provisioning", "conditions": machine_conditions(g,
                    (Some(true), "Ready", ""),
                    (Some(false), "NotReady", &format!("{infra_machine_kind} status.initialization.provisioned is false")),
                    (None, "InspectionFailed", &node),
                    (None, "InspectionFailed", &node))}),
            );
            continue;
        }
        if providerless(m) {
            update(api, &k, |v| v["spec"]["providerID"] = json!(provider_id));
        }
        let addresses = machine_addresses(api, m, infra_obj, i as u32);
        let internal = addresses[0]["address"].as_str().unwrap_or("").to_string();
        // A node registers once its kubelet can reach an API server: after etcd bootstrap.
        let node_up = cp_bootstrapped && workload.is_some();
        let loaded = talos_cfg
            .as_ref()
            .and_then(|t| crate::talos::load(t.get("spec").unwrap_or(&Value::Null)).ok());
        let external_ccm = loaded.as_ref().is_some_and(|c| c.external_cloud_provider);
        // The API server runs on the control-plane machines with their config's admission
        // settings.
        if is_cp && let (Some(key), Some(c)) = (&wl_key, &loaded) {
            crate::psa::configure(world, key, c.pod_security.clone());
        }
        let mut node = None;
        if node_up && let Some(w) = &workload {
            register_node(w, m, is_cp, &internal, external_ccm);
            initialise_node(w, name_of(m), infra_kind, &provider_id, &addresses);
            // Cluster API finds the Node only by provider ID (machine_controller_noderef.go@v1.14.0).
            node = w
                .store
                .list("/nodes", None)
                .0
                .into_iter()
                .find(|n| !provider_id.is_empty() && s(n, "/spec/providerID") == provider_id);
        }
        let node_cond = node.as_ref().and_then(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| s(c, "/type") == "Ready"))
                .cloned()
        });
        let node_ready = node_cond
            .as_ref()
            .is_some_and(|c| s(c, "/status") == "True");
        let node_msg = node_cond
            .as_ref()
            .map(|c| format!("* Node.Ready: {}", s(c, "/message")))
            .unwrap_or_default();
        let waiting = waiting_node(&provider_id);
        let (nr, nh) = match (&node, node_ready) {
            (None, _) => (
                (None, "InspectionFailed", waiting.as_str()),
                (None, "InspectionFailed", waiting.as_str()),
            ),
            (Some(_), true) => (
                (Some(true), "NodeReady", ""),
                (Some(true), "NodeHealthy", ""),
            ),
            (Some(_), false) => (
                (Some(false), "NodeNotReady", node_msg.as_str()),
                (Some(false), "NodeNotHealthy", node_msg.as_str()),
            ),
        };
        let mut st = json!({
            "phase": if node.is_some() { "Running" } else { "Provisioned" },
            "addresses": addresses,
            "initialization": {"bootstrapDataSecretCreated": true, "infrastructureProvisioned": true},
            "conditions": machine_conditions(g, (Some(true), "Ready", ""), (Some(true), "Ready", ""), nr, nh),
        });
        if let Some(n) = &node {
            st["nodeRef"] = json!({"name": name_of(n)});
            st["nodeInfo"] =
                json!({"kubeletVersion": s(m, "/spec/version"), "osImage": "Talos (v1.13)"});
        }
        set_status(api, &k, st);
    }
}

/// A Machine whose cluster has not answered for the remote-conditions grace period: its
/// `NodeReady` and `NodeHealthy` turn Unknown, reason `NodeConnectionDown`, with Cluster API's
/// "Last successful probe at …" message (`lastProbeSuccessMessage`,
/// machine_controller_status.go@v1.14.0), and `Ready`/`Available` follow.
fn connection_down(api: &Api, k: &Key, m: &Value, lost: &crate::outage::Lost) {
    let Some(conds) = m.pointer("/status/conditions").and_then(Value::as_array) else {
        return;
    };
    let part = |t: &str| -> (Option<bool>, String, String) {
        conds
            .iter()
            .find(|c| s(c, "/type") == t)
            .map(|c| {
                let ok = match s(c, "/status") {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                };
                (
                    ok,
                    s(c, "/reason").to_string(),
                    s(c, "/message").to_string(),
                )
            })
            .unwrap_or((None, String::new(), String::new()))
    };
    let (boot, infra) = (part("BootstrapConfigReady"), part("InfrastructureReady"));
    let msg = format!("Last successful probe at {}", lost.last_success);
    let down: Part<'_> = (None, "NodeConnectionDown", &msg);
    let mut st = m.get("status").cloned().unwrap_or(json!({}));
    st["conditions"] = json!(machine_conditions(
        generation(m),
        (boot.0, &boot.1, &boot.2),
        (infra.0, &infra.1, &infra.2),
        down,
        down,
    ));
    set_status(api, k, st);
}

/// A Machine's v1beta2 conditions: the three inputs, `NodeReady`, and `Ready`/`Available`
/// summarising BootstrapConfigReady, InfrastructureReady and NodeHealthy as Cluster API does
/// (`setReadyCondition`/`setAvailableCondition`, machine_controller_status.go@v1.14.0; no
/// minReadySeconds).
type Part<'a> = (Option<bool>, &'a str, &'a str);

fn machine_conditions(
    g: i64,
    boot: Part<'_>,
    infra: Part<'_>,
    node_ready: Part<'_>,
    node_healthy: Part<'_>,
) -> Vec<Value> {
    let inputs = [
        ("BootstrapConfigReady", boot),
        ("InfrastructureReady", infra),
        ("NodeHealthy", node_healthy),
    ];
    let bad = |p: &Part<'_>| p.0 != Some(true);
    let ready = if inputs.iter().any(|(_, p)| p.0 == Some(false)) {
        Some(false)
    } else if inputs.iter().any(|(_, p)| p.0.is_none()) {
        None
    } else {
        Some(true)
    };
    let msg = inputs
        .iter()
        .filter(|(_, p)| bad(p))
        .map(|(t, p)| format!("* {t}: {}", if p.2.is_empty() { p.1 } else { p.2 }))
        .collect::<Vec<_>>()
        .join("\n");
    let (rr, ar) = match ready {
        Some(true) => ("Ready", "Available"),
        Some(false) => ("NotReady", "NotReady"),
        None => ("ReadyUnknown", "NotReady"),
    };
    vec![
        cond("BootstrapConfigReady", boot.0, boot.1, boot.2, g),
        cond("InfrastructureReady", infra.0, infra.1, infra.2, g),
        cond("NodeReady", node_ready.0, node_ready.1, node_ready.2, g),
        cond(
            "NodeHealthy",
            node_healthy.0,
            node_healthy.1,
            node_healthy.2,
            g,
        ),
        cond("Ready", ready, rr, &msg, g),
        cond("Available", Some(ready == Some(true)), ar, "", g),
    ]
}

/// The kubelet registers its Node: with `--cloud-provider=external` it has no provider ID and
/// carries [`crate::ccm::UNINITIALIZED_TAINT`] until a CCM initialises it; without it, it never
/// gets a provider ID (kubernetes/kubernetes:`pkg/kubelet/kubelet_node_status.go`).
fn register_node(w: &Api, m: &Value, is_cp: bool, ip: &str, external: bool) {
    let nk = Key::new("/nodes", "", name_of(m));
    let role: &[(&str, &str)] = if is_cp {
        &[("node-role.kubernetes.io/control-plane", "")]
    } else {
        &[]
    };
    let mut node = crate::workload::node_json(name_of(m), ip, false, role, s(m, "/spec/version"));
    if external {
        node["spec"]["taints"] = json!([{"key": crate::ccm::UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"}]);
    }
    crate::workload::ensure(w, &nk, node).ok();
}

/// A CCM's node controller initialises a tainted Node: provider ID and addresses from the
/// cloud, then the taint goes (kubernetes/cloud-provider:`controllers/node/node_controller.go`).
fn initialise_node(w: &Api, name: &str, cloud: &str, provider_id: &str, addresses: &[Value]) {
    let nk = Key::new("/nodes", "", name);
    let Some(n) = w.store.get(&nk) else {
        return;
    };
    let tainted = n
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|t| s(t, "/key") == crate::ccm::UNINITIALIZED_TAINT)
        });
    if !tainted || !crate::ccm::initialises_nodes(w, cloud) {
        return;
    }
    let mut addrs: Vec<Value> = addresses.to_vec();
    addrs.push(json!({"type": "Hostname", "address": name}));
    update(w, &nk, |v| {
        v["spec"]["providerID"] = json!(provider_id);
        if let Some(a) = v.pointer_mut("/spec/taints").and_then(Value::as_array_mut) {
            a.retain(|t| s(t, "/key") != crate::ccm::UNINITIALIZED_TAINT);
        }
        v["status"]["addresses"] = json!(addrs);
    });
}

/// The addresses the infrastructure provider reports for a Machine: the InternalIP from the
/// node subnet always, an ExternalIP only when the machine template asks for a public address
/// (CAPG `GCPMachineTemplate.spec.template.spec.publicIP`: an `ONE_TO_ONE_NAT` access config,
/// reported as ExternalIP — `cloud/scope/machine.go`, `cloud/services/compute/instances/reconcile.go`@v1.12.0;
/// CAPA `AWSMachineSpec.publicIP`: a public subnet and a public address —
/// `pkg/cloud/services/ec2/instances.go`@v2.11.1).
fn machine_addresses(api: &Api, m: &Value, infra: Option<&Value>, index: u32) -> Vec<Value> {
    let old = m
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| {
        old.iter()
            .find(|a| s(a, "/type") == t)
            .map(|a| s(a, "/address").to_string())
            .filter(|a| !a.is_empty())
    };
    // A running instance keeps the addresses it was created with: a template edited later
    // changes new machines only.
    if find("InternalIP").is_some() {
        return old;
    }
    let internal = node_ip(infra, index);
    let mut out = vec![json!({"type": "InternalIP", "address": internal})];
    if machine_template(api, m).and_then(|t| {
        t.pointer("/spec/template/spec/publicIP")
            .and_then(Value::as_bool)
    }) == Some(true)
    {
        out.push(json!({"type": "ExternalIP", "address": external_ip(name_of(m))}));
    }
    out
}

/// A stable public-looking address per machine, from 198.18.0.0/15 (outside RFC 1918, so the
/// simulator treats it as reachable from a public egress).
fn external_ip(name: &str) -> String {
    let h = name.bytes().fold(0x811c9dc5u32, |a, b| {
        (a ^ b as u32).wrapping_mul(0x01000193)
    });
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    std::net::Ipv4Addr::from(base + 1 + h % 131_070).to_string()
}

/// The infrastructure machine template a Machine was made from: its TalosControlPlane's
/// `spec.infrastructureTemplate` or its MachineDeployment's `spec.template.spec.infrastructureRef`.
pub(crate) fn machine_template(api: &Api, m: &Value) -> Option<Value> {
    let owner = m
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| matches!(s(r, "/kind"), "TalosControlPlane" | "MachineDeployment"))?
        .clone();
    let (group, path) = if s(&owner, "/kind") == "TalosControlPlane" {
        (CP, "/spec/infrastructureTemplate")
    } else {
        (CAPI, "/spec/template/spec/infrastructureRef")
    };
    let t = ty(api, group, s(&owner, "/kind"))?;
    let o = api
        .store
        .get(&Key::new(&t.key(), ns_of(m), s(&owner, "/name")))?;
    // The template the machine was made from, not the one its owner names now (a rollout
    // may have moved the owner on).
    let mut r = o.pointer(path)?.clone();
    if let Some(from) = m
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(super::rollout::CLONED_FROM_NAME))
        .and_then(Value::as_str)
    {
        r["name"] = json!(from);
    }
    resolve(api, &r, ns_of(m)).map(|(_, v)| v)
}

pub(super) fn providerless(m: &Value) -> bool {
    m.pointer("/spec/providerID")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
}
