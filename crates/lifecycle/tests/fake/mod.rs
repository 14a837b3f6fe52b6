//! An in-memory stand-in for the management cluster and the workload clusters, behind the
//! engine's `Api` trait. It plays the controllers only as far as the engine's waits need:
//! an applied Cluster becomes Available and gets a kubeconfig Secret; an applied Cilium
//! HelmChartProxy becomes Ready, installs agents and the clustermesh-apiserver in its workload
//! cluster, and makes the agents report ready every peer the values give an address. Every
//! write is logged, so tests assert order; clusters can be made to fail.

pub mod fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use meshfleet_lifecycle::{Api, KubeError, ObjectRef, Retry};
use serde_json::{Value, json};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `mgmt` or the workload cluster's name.
    pub server: String,
    /// `apply`, `create`, `delete`.
    pub verb: String,
    /// `Kind/name`.
    pub what: String,
}

type Key = (String, String, Option<String>, String);

/// Everything the fake holds.
#[derive(Default)]
pub struct World {
    objects: BTreeMap<Key, Value>,
    /// Every write, in order.
    pub calls: Vec<Call>,
    /// Clusters whose objects the management cluster refuses to apply (HTTP 422).
    pub refuse: BTreeSet<String>,
    /// Kinds the management cluster does not serve.
    pub not_served: BTreeSet<String>,
    /// Clusters that never become Available (their control plane stays unbootstrapped).
    pub stuck: BTreeSet<String>,
    /// Clusters whose machines are never replaced once they exist: a changed version or
    /// template adds one new machine that never boots, and the old ones stay (a rollout that
    /// cannot finish).
    pub held: BTreeSet<String>,
}

impl World {
    fn put(&mut self, server: &str, obj: Value) -> Value {
        let r = ObjectRef::of(&obj).expect("named object");
        self.objects.insert(key(server, &r), obj.clone());
        obj
    }

    fn get(&self, server: &str, r: &ObjectRef) -> Option<Value> {
        self.objects.get(&key(server, r)).cloned()
    }

    /// The objects of one server.
    pub fn count(&self, server: &str, kind: &str) -> usize {
        self.objects
            .keys()
            .filter(|(s, k, _, _)| s == server && k == kind)
            .count()
    }

    /// Writes whose `what` starts with `prefix`, on `server`, as indexes into `calls`.
    pub fn positions(&self, server: &str, verb: &str, prefix: &str) -> Vec<usize> {
        self.calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.server == server && c.verb == verb && c.what.starts_with(prefix))
            .map(|(i, _)| i)
            .collect()
    }

    /// The controllers' reaction to a write on the management cluster.
    fn react(&mut self, obj: &Value) {
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        match kind.as_str() {
            "Cluster" if !self.stuck.contains(&name) => {
                let mut c = obj.clone();
                c["status"] = json!({"conditions": [
                    {"type": "Available", "status": "True", "reason": "Available"}
                ]});
                self.put("mgmt", c);
                let b64 = base64::engine::general_purpose::STANDARD;
                self.put(
                    "mgmt",
                    json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": format!("{name}-kubeconfig"), "namespace": ns,
                            "labels": {"cluster.x-k8s.io/cluster-name": name}},
                        "data": {"value": b64.encode(format!("fake://{name}"))}}),
                );
                self.put(
                    &name,
                    json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "kube-system"}}),
                );
                self.put(
                    &name,
                    json!({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": format!("{name}-cp-0")},
                        "status": {"addresses": [{"type": "InternalIP",
                            "address": format!("10.0.{}.2", name.bytes().map(u32::from).sum::<u32>() % 250)}]}}),
                );
            }
            "TalosControlPlane" | "MachineDeployment" => self.machines_for(obj, &name, ns),
            "HelmChartProxy" => {
                let cluster = obj["metadata"]["labels"]["meshfleet.io/cluster"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut p = obj.clone();
                p["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
                self.put("mgmt", p);
                if obj["spec"]["chartName"] != "cilium" {
                    return;
                }
                self.put(
                    &cluster,
                    json!({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "clustermesh-apiserver", "namespace": "kube-system"},
                        "spec": {"type": "NodePort", "ports": [{"port": 2379, "nodePort": 32379}]}}),
                );
                self.put(
                    &cluster,
                    json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "cilium-0", "namespace": "kube-system",
                            "labels": {"k8s-app": "cilium"}},
                        "spec": {"nodeName": format!("{cluster}-cp-0")},
                        "status": {"phase": "Running"}}),
                );
            }
            _ => {}
        }
    }

    /// The machines (and their TalosConfigs) of a control plane or MachineDeployment: replaced
    /// at once by `replicas` machines at its version, unless the cluster is `held`.
    fn machines_for(&mut self, obj: &Value, owner: &str, ns: Option<String>) {
        let cluster = obj["metadata"]["labels"]["meshfleet.io/cluster"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let is_cp = obj["kind"] == "TalosControlPlane";
        let (version, talos) = if is_cp {
            (
                obj["spec"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                obj["spec"]["controlPlaneConfig"]["controlplane"]["talosVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        } else {
            let tpl = obj["spec"]["template"]["spec"]["bootstrap"]["configRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let talos = self
                .objects
                .iter()
                .find(|((s, k, _, n), _)| s == "mgmt" && k == "TalosConfigTemplate" && *n == tpl)
                .and_then(|(_, v)| v["spec"]["template"]["spec"]["talosVersion"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                obj["spec"]["template"]["spec"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                talos,
            )
        };
        let replicas = obj["spec"]["replicas"].as_u64().unwrap_or(1);
        let mine = |o: &Value| o["metadata"]["labels"]["fake/owner"] == owner;
        let existing: Vec<Value> = self
            .objects
            .iter()
            .filter(|((s, k, _, _), v)| s == "mgmt" && k == "Machine" && mine(v))
            .map(|(_, v)| v.clone())
            .collect();
        let current = |m: &Value| {
            m["spec"]["version"] == version.as_str() && m["fake"]["talos"] == talos.as_str()
        };
        if !existing.is_empty() && existing.iter().all(current) && existing.len() as u64 == replicas
        {
            return;
        }
        let machine = |name: String, up: bool| {
            json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
            "metadata": {"name": name, "namespace": ns,
                "labels": {"cluster.x-k8s.io/cluster-name": cluster, "fake/owner": owner}},
            "spec": {"version": version, "bootstrap": {"configRef": {"name": name}}},
            "fake": {"talos": talos},
            "status": if up {
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            } else {
                json!({"phase": "Provisioning", "conditions": [{"type": "Ready", "status": "False"},
                    {"type": "InfrastructureReady", "status": "False", "message": "the instance does not boot (held by the test)"}]})
            }})
        };
        let config = |name: &str| {
            json!({"apiVersion": "bootstrap.cluster.x-k8s.io/v1alpha3", "kind": "TalosConfig",
                "metadata": {"name": name, "namespace": ns,
                    "labels": {"cluster.x-k8s.io/cluster-name": cluster, "fake/owner": owner}},
                "spec": {"talosVersion": talos}})
        };
        if self.held.contains(&cluster) && !existing.is_empty() {
            let name = format!("{owner}-{version}-{talos}-new");
            self.put("mgmt", machine(name.clone(), false));
            self.put("mgmt", config(&name));
            return;
        }
        self.objects.retain(|(s, k, _, _), v| {
            !(s == "mgmt" && (k == "Machine" || k == "TalosConfig") && mine(v))
        });
        for i in 0..replicas {
            let name = format!("{owner}-{version}-{talos}-{i}");
            self.put("mgmt", machine(name.clone(), true));
            self.put("mgmt", config(&name));
        }
    }

    /// What the agents of `cluster` report: every peer its proxy's values give `ips` is up.
    fn metrics(&self, cluster: &str) -> String {
        let proxy = self
            .objects
            .iter()
            .find(|((s, k, _, _), v)| {
                s == "mgmt"
                    && k == "HelmChartProxy"
                    && v["spec"]["chartName"] == "cilium"
                    && v["metadata"]["labels"]["meshfleet.io/cluster"] == cluster
            })
            .map(|(_, v)| v.clone());
        let values: Value = proxy
            .and_then(|p| p["spec"]["valuesTemplate"].as_str().map(str::to_string))
            .and_then(|t| serde_saphyr::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let mut out = String::new();
        if let Some(peers) = values
            .pointer("/clustermesh/config/clusters")
            .and_then(Value::as_object)
        {
            for (peer, v) in peers {
                let up = u8::from(
                    v.get("ips")
                        .is_some_and(|i| i.as_array().is_some_and(|a| !a.is_empty())),
                );
                out.push_str(&format!(
                    "cilium_clustermesh_remote_cluster_readiness_status{{source_cluster=\"{cluster}\",source_node_name=\"{cluster}-cp-0\",target_cluster=\"{peer}\"}} {up}\n"
                ));
            }
        }
        out
    }
}

fn key(server: &str, r: &ObjectRef) -> Key {
    (
        server.to_string(),
        r.kind.clone(),
        r.namespace.clone(),
        r.name.clone(),
    )
}

fn selected(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let labels = &obj["metadata"]["labels"];
        match term.split_once('=') {
            Some((k, v)) => labels[k] == v,
            None => labels.get(term).is_some(),
        }
    })
}

/// A handle on the fake, as the management cluster or one workload cluster.
#[derive(Clone)]
pub struct Fake {
    /// Shared state.
    pub world: Arc<Mutex<World>>,
    server: String,
}

impl Fake {
    /// A new fake management cluster.
    pub fn new() -> Self {
        Self {
            world: Arc::default(),
            server: "mgmt".into(),
        }
    }

    /// The state, locked.
    pub fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    fn refused(&self, obj: &Value) -> Option<KubeError> {
        let w = self.w();
        let cluster = obj["metadata"]["labels"]["meshfleet.io/cluster"].as_str()?;
        (self.server == "mgmt" && w.refuse.contains(cluster)).then(|| KubeError::Api {
            verb: "apply",
            object: ObjectRef::of(obj)
                .map(|r| r.to_string())
                .unwrap_or_default(),
            code: 422,
            reason: "Invalid".into(),
            message: "refused by the test".into(),
        })
    }

    fn record(&self, verb: &str, r: &ObjectRef) {
        self.w().calls.push(Call {
            server: self.server.clone(),
            verb: verb.into(),
            what: format!("{}/{}", r.kind, r.name),
        });
    }
}

impl Api for Fake {
    fn server(&self) -> &str {
        &self.server
    }

    async fn apply_as(&self, obj: &Value, manager: &str) -> Result<Value, KubeError> {
        if let Some(e) = self.refused(obj) {
            return Err(e);
        }
        let r = ObjectRef::of(obj)?;
        self.record("apply", &r);
        let mut w = self.w();
        let old = w.get(&self.server, &r);
        // Another manager's partial apply only adds its labels; meshfleet's own apply replaces
        // its fields but keeps what controllers (status) and other managers (labels) wrote, as
        // server-side apply does.
        let mut stored = match (&old, manager == meshfleet_kube::FIELD_MANAGER) {
            (Some(old), false) => {
                let mut o = old.clone();
                if let Some(l) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
                    for (k, v) in l {
                        o["metadata"]["labels"][k] = v.clone();
                    }
                }
                o
            }
            _ => obj.clone(),
        };
        if let Some(old) = &old {
            if let Some(st) = old.get("status") {
                stored["status"] = st.clone();
            }
            if let Some(l) = old.pointer("/metadata/labels").and_then(Value::as_object) {
                for (k, v) in l {
                    if stored["metadata"]["labels"].get(k).is_none() {
                        stored["metadata"]["labels"][k] = v.clone();
                    }
                }
            }
        }
        let stored = w.put(&self.server, stored);
        if self.server == "mgmt" {
            w.react(&stored);
        }
        Ok(stored)
    }

    async fn create_if_absent(&self, obj: &Value) -> Result<(Value, bool), KubeError> {
        let r = ObjectRef::of(obj)?;
        let existing = self.w().get(&self.server, &r);
        if let Some(v) = existing {
            return Ok((v, false));
        }
        self.record("create", &r);
        Ok((self.w().put(&self.server, obj.clone()), true))
    }

    async fn get(&self, r: &ObjectRef) -> Result<Option<Value>, KubeError> {
        Ok(self.w().get(&self.server, r))
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, KubeError> {
        let w = self.w();
        if self.server == "mgmt" && w.not_served.contains(kind) {
            return Err(KubeError::NotServed {
                api_version: api_version.into(),
                kind: kind.into(),
            });
        }
        Ok(w.objects
            .iter()
            .filter(|((s, k, ns, _), _)| {
                *s == self.server && k == kind && namespace.is_none_or(|n| ns.as_deref() == Some(n))
            })
            .map(|(_, v)| v.clone())
            .filter(|v| selected(v, selector))
            .collect())
    }

    async fn delete(&self, r: &ObjectRef) -> Result<bool, KubeError> {
        self.record("delete", r);
        let mut w = self.w();
        let gone = w.objects.remove(&key(&self.server, r)).is_some();
        // Cluster API deletes what a Cluster owns with it.
        if r.kind == "Cluster" {
            let name = r.name.clone();
            w.objects.retain(|(s, k, _, n), _| {
                !(s == "mgmt" && k == "Secret" && *n == format!("{name}-kubeconfig"))
            });
        }
        Ok(gone)
    }

    async fn pod_proxy_get(
        &self,
        _namespace: &str,
        _pod: &str,
        _port: u16,
        _path: &str,
    ) -> Result<String, KubeError> {
        Ok(self.w().metrics(&self.server))
    }

    async fn missing_kinds(
        &self,
        kinds: &[(String, String)],
    ) -> Result<Vec<(String, String)>, KubeError> {
        let w = self.w();
        Ok(kinds
            .iter()
            .filter(|(_, k)| w.not_served.contains(k))
            .cloned()
            .collect())
    }

    async fn open(&self, kubeconfig: &str, what: &str, _retry: Retry) -> Result<Self, KubeError> {
        let server = kubeconfig
            .strip_prefix("fake://")
            .ok_or_else(|| KubeError::Kubeconfig {
                source_desc: what.to_string(),
                message: "not a fake kubeconfig".into(),
            })?;
        Ok(Self {
            world: self.world.clone(),
            server: server.to_string(),
        })
    }
}
