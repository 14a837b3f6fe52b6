//! The echo Pods `meshfleet mesh test` runs, as the simulated network lets them talk.
//!
//! A Pod whose container runs Kubernetes' e2e image `agnhost` with `netexec` serves HTTP on
//! `--http-port` (default 8080). Two of its handlers are modelled, reached through the API
//! server's pod proxy as a client reaches the real ones
//! (`kubernetes/kubernetes:test/images/agnhost/netexec/netexec.go`):
//!
//! - `/hostname` answers the Pod's host name (its name);
//! - `/dial?host=H&port=P&request=hostname&protocol=http&tries=N` makes the Pod itself connect
//!   N times to `H:P` and `GET /hostname`, and answers `{"responses":[…],"errors":[…]}` (either
//!   key left out when empty). `H` is resolved once first; a name that does not resolve answers
//!   400 `host and/or port param are invalid. …`.
//!
//! Every connection is decided from the simulated world, never from a constant: the target is
//! resolved in the client's cluster (a pod IP, a Service's ClusterIP or DNS name, or an MCS-API
//! `clusterset.local` name), a Service picks one of its backends per connection
//! ([`crate::workloads::service_backends`]: global services, affinity, the cache TTL), and a
//! connection to a Pod in another cluster needs both clusters' mesh links to each other up
//! (each agent must know the other cluster's nodes and identities) and no outage or partition
//! between them ([`crate::outage`]); a target that is gone or not listening refuses.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::World;
use crate::controllers::{name_of, ns_of, s};
use crate::store::Key;
use crate::workloads::{self, Backend};

/// The image `mesh test` runs (any tag or digest of it).
pub const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost";

/// The HTTP port a Pod's `agnhost netexec` listens on, if it runs one.
pub fn http_port(pod: &Value) -> Option<u16> {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array)?;
    containers.iter().find_map(|c| {
        if !s(c, "/image").starts_with(IMAGE) {
            return None;
        }
        let words: Vec<String> = ["command", "args"]
            .iter()
            .flat_map(|k| {
                c.get(*k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if !words.iter().any(|w| w == "netexec") {
            return None;
        }
        let port = match words.iter().find_map(|w| w.strip_prefix("--http-port=")) {
            None => 8080,
            Some(p) => p.parse().ok()?,
        };
        Some(port)
    })
}

/// Answer a pod-proxy GET to `pod` (in the cluster `key`) on `port`: `None` when that Pod
/// serves nothing there (the caller answers as for a closed port).
pub fn serve(
    world: &World,
    key: &str,
    pod: &Value,
    port: u16,
    tail: &[&str],
    query: &HashMap<String, String>,
) -> Option<(u16, String)> {
    if http_port(pod)? != port || !workloads::pod_ready(pod) {
        return None;
    }
    match tail {
        ["hostname" | "hostName"] => Some((200, name_of(pod).to_string())),
        ["dial"] => Some(dial(world, key, pod, query)),
        _ => Some((404, "404 page not found\n".to_string())),
    }
}

fn q<'a>(query: &'a HashMap<String, String>, k: &str) -> &'a str {
    query.get(k).map(String::as_str).unwrap_or("")
}

/// What `H` names, resolved in the client's cluster.
enum Target {
    /// A Pod address: (cluster key, pod).
    Pod(String, Value),
    /// A Service (or ServiceImport) with its backends.
    Service(Vec<Backend>),
}

/// The cluster DNS server's address for messages: the tenth address of the service CIDR, as
/// Talos configures it.
fn dns_server(world: &World, key: &str) -> String {
    let Some(api) = world.workload(key) else {
        return "10.96.0.10".into();
    };
    api.store
        .get(&Key::new("/services", "kube-system", "kube-dns"))
        .map(|v| s(&v, "/spec/clusterIP").to_string())
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "10.96.0.10".into())
}

fn resolve(world: &World, key: &str, client_ns: &str, host: &str) -> Option<Target> {
    let api = world.workload(key)?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        for svc in api.store.list("/services", None).0 {
            if s(&svc, "/spec/clusterIP") == host {
                return workloads::service_backends(world, key, ns_of(&svc), name_of(&svc))
                    .map(Target::Service);
            }
        }
        for (k, (other, _)) in workloads::members(world) {
            if let Some(p) = other.store.list("/pods", None).0.into_iter().find(|p| {
                s(p, "/status/podIP") == host
                    && p.pointer("/spec/hostNetwork").and_then(Value::as_bool) != Some(true)
            }) {
                return Some(Target::Pod(k, p));
            }
        }
        // An address nothing owns: connections to it time out.
        return Some(Target::Service(Vec::new()));
    }
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    match labels.as_slice() {
        [name, ns, "svc", "clusterset", "local"] => {
            workloads::import_backends(world, key, ns, name).map(Target::Service)
        }
        [name] => workloads::service_backends(world, key, client_ns, name).map(Target::Service),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
            workloads::service_backends(world, key, ns, name).map(Target::Service)
        }
        _ => None,
    }
}

fn timeout(ip: &str, port: u16) -> String {
    format!(
        "Get \"http://{ip}:{port}/hostname\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    )
}

fn refused(ip: &str, port: u16) -> String {
    format!(
        "Get \"http://{ip}:{port}/hostname\": dial tcp {ip}:{port}: connect: connection refused"
    )
}

/// Whether the cluster `from` reaches pods of cluster `to`: the same cluster, or both mesh
/// links between them up, and no outage between them.
fn path_open(world: &World, from: &str, to: &str) -> bool {
    let outages = crate::outage::current(world);
    if outages.separated(from, to) {
        return false;
    }
    if from == to {
        return true;
    }
    let members = workloads::members(world);
    let name = |k: &str| members.get(k).map(|(_, n)| n.clone()).unwrap_or_default();
    let up = |a: &str, b: &str| {
        world
            .mesh_links(a)
            .is_some_and(|l| l.links.iter().any(|x| x.peer == name(b) && x.ready))
    };
    up(from, to) && up(to, from)
}

/// One connection from a Pod of cluster `from` to `pod` of cluster `to` on `port`.
fn connect(world: &World, from: &str, to: &str, pod: &Value, port: u16) -> Result<String, String> {
    let ip = s(pod, "/status/podIP");
    if !path_open(world, from, to) {
        return Err(timeout(ip, port));
    }
    // The Pod as it is now (it may have gone since the service's endpoints were read).
    let now = world
        .workload(to)
        .and_then(|a| a.store.get(&Key::new("/pods", ns_of(pod), name_of(pod))));
    match now {
        Some(p) if workloads::pod_ready(&p) && http_port(&p) == Some(port) => {
            Ok(name_of(&p).to_string())
        }
        _ => Err(refused(ip, port)),
    }
}

fn dial(
    world: &World,
    key: &str,
    client: &Value,
    query: &HashMap<String, String>,
) -> (u16, String) {
    let (host, port, request) = (q(query, "host"), q(query, "port"), q(query, "request"));
    let tries = match q(query, "tries") {
        "" => 1,
        t => match t.parse::<u32>() {
            Ok(n) => n.min(1000),
            Err(e) => return (400, format!("tries parameter is invalid. {e}\n")),
        },
    };
    if request.is_empty() {
        return (400, "request parameter not specified. <nil>\n".into());
    }
    if !matches!(q(query, "protocol"), "" | "http" | "HTTP") {
        return (
            400,
            format!(
                "the simulator models only protocol http, not `{}`\n",
                q(query, "protocol")
            ),
        );
    }
    if !request.eq_ignore_ascii_case("hostname") {
        return (
            400,
            format!("the simulator models only request=hostname, not `{request}`\n"),
        );
    }
    let Ok(port) = port.parse::<u16>() else {
        return (
            400,
            format!("host and/or port param are invalid. address {host}:{port}: invalid port\n"),
        );
    };
    let Some(target) = resolve(world, key, ns_of(client), host) else {
        return (
            400,
            format!(
                "host and/or port param are invalid. lookup {host} on {}:53: no such host\n",
                dns_server(world, key)
            ),
        );
    };
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let start = {
        let mut mem = world.links.lock().unwrap_or_else(|e| e.into_inner());
        mem.turn = mem.turn.wrapping_add(u64::from(tries));
        mem.turn
    };
    for i in 0..u64::from(tries) {
        let r = match &target {
            Target::Pod(k, pod) => connect(world, key, k, pod, port),
            Target::Service(b) if b.is_empty() => {
                Err(if host.parse::<std::net::IpAddr>().is_ok() {
                    timeout(host, port)
                } else {
                    refused(host, port)
                })
            }
            Target::Service(b) => {
                let pick = &b[((start + i) % b.len() as u64) as usize];
                match world
                    .workload(&pick.cluster)
                    .and_then(|a| a.store.get(&Key::new("/pods", &pick.pod.0, &pick.pod.1)))
                {
                    Some(p) => connect(world, key, &pick.cluster, &p, pick.port),
                    None => Err(refused(&pick.ip, pick.port)),
                }
            }
        };
        match r {
            Ok(v) => responses.push(v),
            Err(e) => errors.push(e),
        }
    }
    let mut out = serde_json::Map::new();
    if !responses.is_empty() {
        out.insert("responses".into(), json!(responses));
    }
    if !errors.is_empty() {
        out.insert("errors".into(), json!(errors));
    }
    (200, Value::Object(out).to_string())
}
