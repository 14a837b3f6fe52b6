//! The simulator refuses what the real controllers refuse, for hand-written manifests applied
//! with an unmodified kubectl: each test applies a broken form of the fixtures (modelled on the
//! upstream templates), checks the condition and message a user would see, then applies the
//! fixed form and checks that it converges. Skips loudly without kubectl, unless
//! MESHFLEET_REQUIRE_KUBECTL=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn kubectl_present() -> bool {
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("MESHFLEET_REQUIRE_KUBECTL").as_deref() == Ok("1") {
            panic!("kubectl is required (MESHFLEET_REQUIRE_KUBECTL=1) but was not found on PATH");
        }
        eprintln!(
            "!!! SKIPPING strict tests: `kubectl` not found on PATH (set MESHFLEET_REQUIRE_KUBECTL=1 to fail instead)"
        );
    }
    found
}

fn kubectl(kc: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl get <what> -o json`, or None when it does not exist (yet).
fn get(kc: &Path, what: &[&str]) -> Option<Value> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-n", "fleet", "-o", "json"]);
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .args(&args)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// A fixture with textual edits, written where kubectl can read it.
fn variant(dir: &Path, fixture: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(fixtures().join(fixture)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{fixture} has no `{from}`");
        text = text.replace(from, to);
    }
    let p = dir.join(format!("{}-{fixture}", dir.read_dir().unwrap().count()));
    std::fs::write(&p, text).unwrap();
    p
}

fn apply(kc: &Path, file: &Path) {
    kubectl(
        kc,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            file.to_str().unwrap(),
        ],
    );
}

fn cond<'a>(o: &'a Value, t: &str) -> &'a Value {
    condition(o, t).unwrap_or(&Value::Null)
}

async fn start(egress: &str) -> Sim {
    let crds = crds_dir();
    let egress = egress.parse().unwrap();
    let sim = Sim::start(|c| {
        c.crds_dir = crds;
        c.egress_ip = Some(egress);
        c.speed = 40.0;
    })
    .await;
    kubectl(
        &sim.kubeconfig,
        &[
            "apply",
            "-f",
            fixtures().join("namespace.yaml").to_str().unwrap(),
        ],
    );
    sim
}

/// The workload cluster's kubeconfig, through `kubectl get secret`.
fn workload_kubeconfig(kc: &Path, dir: &Path, cluster: &str) -> PathBuf {
    use base64::Engine;
    let b64 = kubectl(
        kc,
        &[
            "get",
            "secret",
            &format!("{cluster}-kubeconfig"),
            "-n",
            "fleet",
            "-o",
            "jsonpath={.data.value}",
        ],
    );
    let p = dir.join(format!("{cluster}.kubeconfig"));
    std::fs::write(
        &p,
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap();
    p
}

const PEER_IPS: &str = "            ips: [10.1.0.10]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caaph_fails_cilium_peers_without_an_address_until_the_values_are_fixed() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    // The peer has only `port`, as in a first render before any address is known.
    apply(&kc, &variant(dir.path(), "gcp-a.yaml", &[(PEER_IPS, "")]));
    let hrp = eventually("the release fails", 60, || async {
        get(&kc, &["helmreleaseproxy", "cilium-gcp-a-gcp-a"])
            .filter(|h| cond(h, "HelmReleaseReady")["reason"] == "HelmInstallOrUpgradeFailed")
    })
    .await;
    let ready = cond(&hrp, "Ready");
    assert_eq!(ready["status"], "False", "{hrp}");
    assert_eq!(ready["reason"], "HelmInstallOrUpgradeFailed", "{hrp}");
    assert_eq!(
        cond(&hrp, "HelmReleaseReady")["message"],
        "execution error at (cilium/templates/clustermesh-config/kvstoremesh-secret.yaml:19:18): missing clustermesh.apiserver.config.clusters.address",
        "{hrp}"
    );
    assert_eq!(hrp["status"]["status"], "failed");
    // Nothing was installed: no cilium-config, nodes stay NotReady.
    let wkc = workload_kubeconfig(&kc, dir.path(), "gcp-a");
    let (ok, _) = {
        let o = Command::new("kubectl")
            .env("KUBECONFIG", &wkc)
            .args(["get", "configmap", "cilium-config", "-n", "kube-system"])
            .output()
            .unwrap();
        (o.status.success(), ())
    };
    assert!(!ok, "cilium-config exists although the install failed");
    // Peers listed with an address (`ips` filled in): the next reconcile installs.
    apply(&kc, &fixtures().join("gcp-a.yaml"));
    let hrp = eventually("the release deploys", 60, || async {
        get(&kc, &["helmreleaseproxy", "cilium-gcp-a-gcp-a"])
            .filter(|h| h["status"]["status"] == "deployed")
    })
    .await;
    assert_eq!(cond(&hrp, "Ready")["status"], "True", "{hrp}");
    kubectl(
        &wkc,
        &["get", "configmap", "cilium-config", "-n", "kube-system"],
    );
    sim.stop().await;
}

#[test]
fn cilium_refusal_follows_the_chart() {
    use meshfleet_sim::caaph::cilium_values_refused as refused;
    use serde_json::json;
    let mesh = |clusters: Value, extra: Value| {
        let mut v = json!({"clustermesh": {"useAPIServer": true, "config": {"enabled": true, "clusters": clusters}}});
        if let Some(o) = extra.as_object() {
            for (k, x) in o {
                v["clustermesh"][k] = x.clone();
            }
        }
        v
    };
    let kvs = "execution error at (cilium/templates/clustermesh-config/kvstoremesh-secret.yaml:19:18): missing clustermesh.apiserver.config.clusters.address";
    let plain = "execution error at (cilium/templates/clustermesh-config/clustermesh-secret.yaml:22:18): missing clustermesh.apiserver.config.clusters.address";
    // Map and list forms; empty `ips`/`address` count as missing.
    for c in [
        json!({"b": {"port": 32379}}),
        json!([{"name": "b", "port": 32379}]),
        json!({"b": {"port": 32379, "ips": []}}),
        json!({"b": {"port": 32379, "address": ""}}),
    ] {
        assert_eq!(refused(&mesh(c, json!({}))).as_deref(), Some(kvs));
    }
    // KVStoreMesh off: the same `required` runs from clustermesh-secret.yaml.
    assert_eq!(
        refused(&mesh(
            json!({"b": {"port": 1}}),
            json!({"apiserver": {"kvstoremesh": {"enabled": false}}})
        ))
        .as_deref(),
        Some(plain)
    );
    // Fine: an address, ips, a disabled entry, no peers, or the mesh config off.
    for c in [
        json!({"b": {"port": 32379, "ips": ["10.1.0.10"]}}),
        json!({"b": {"port": 32379, "address": "b.mesh.example"}}),
        json!({"b": {"port": 32379, "enabled": false}}),
        json!({}),
    ] {
        assert_eq!(refused(&mesh(c, json!({}))), None);
    }
    assert_eq!(
        refused(&json!({"clustermesh": {"config": {"enabled": false, "clusters": {"b": {}}}}})),
        None
    );
}

const CP_PATCH: &str = "      strategicPatches:\n      - |\n        cluster:\n          externalCloudProvider:\n            enabled: true\n        machine:\n          features:\n";
const WORKER_PATCH: &str = "      strategicPatches:\n      - |\n        cluster:\n          externalCloudProvider:\n            enabled: true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_get_node_refs_only_once_a_ccm_sets_provider_ids() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    // External cloud provider on, but no CCM release yet (its HelmChartProxy left out).
    let full = std::fs::read_to_string(fixtures().join("gcp-a.yaml")).unwrap();
    let no_ccm = full
        .split("\n---\n")
        .filter(|d| !d.contains("chartName: talos-cloud-controller-manager"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    let f = dir.path().join("no-ccm.yaml");
    std::fs::write(&f, no_ccm).unwrap();
    apply(&kc, &f);
    let wait_msg = |m: &Value| {
        cond(m, "NodeHealthy")["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let ms = eventually("machines wait for a provider ID", 60, || async {
        get(
            &kc,
            &["machines", "-l", "cluster.x-k8s.io/cluster-name=gcp-a"],
        )
        .filter(|l| {
            let items = l["items"].as_array().unwrap();
            items.len() == 3
                && items
                    .iter()
                    .all(|m| wait_msg(m).starts_with("Waiting for a Node with spec.providerID"))
        })
    })
    .await;
    for m in ms["items"].as_array().unwrap() {
        let pid = m["spec"]["providerID"].as_str().unwrap();
        assert!(
            pid.starts_with("gce://demo-project/europe-west1-a/gcp-a-"),
            "{pid}"
        );
        assert_eq!(
            wait_msg(m),
            format!("Waiting for a Node with spec.providerID {pid} to exist")
        );
        assert_eq!(cond(m, "NodeHealthy")["status"], "Unknown");
        assert_eq!(cond(m, "NodeHealthy")["reason"], "InspectionFailed");
        assert_eq!(m["status"]["phase"], "Provisioned");
        assert!(m["status"]["nodeRef"].is_null(), "{m}");
    }
    // The kubelets registered with the uninitialized taint and no provider ID.
    let wkc = workload_kubeconfig(&kc, dir.path(), "gcp-a");
    let nodes: Value =
        serde_json::from_str(&kubectl(&wkc, &["get", "nodes", "-o", "json"])).unwrap();
    for n in nodes["items"].as_array().unwrap() {
        assert!(n["spec"]["providerID"].is_null(), "{n}");
        assert_eq!(
            n["spec"]["taints"][0]["key"],
            "node.cloudprovider.kubernetes.io/uninitialized"
        );
    }
    let md = get(&kc, &["md", "gcp-a-workers"]).unwrap();
    assert_eq!(cond(&md, "Available")["status"], "False", "{md}");
    let c = get(&kc, &["cluster", "gcp-a"]).unwrap();
    assert_eq!(cond(&c, "Available")["status"], "False");
    // The CCM release (talos-ccm: node controller, no service controller) brings them up.
    apply(&kc, &fixtures().join("gcp-a.yaml"));
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Available",
            "cluster/gcp-a",
            "-n",
            "fleet",
            &wait_timeout(),
        ],
    );
    let nodes: Value =
        serde_json::from_str(&kubectl(&wkc, &["get", "nodes", "-o", "json"])).unwrap();
    for n in nodes["items"].as_array().unwrap() {
        assert!(
            n["spec"]["providerID"]
                .as_str()
                .is_some_and(|p| p.starts_with("gce://")),
            "{n}"
        );
        assert!(
            n["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()),
            "{n}"
        );
    }
    let ms = get(
        &kc,
        &["machines", "-l", "cluster.x-k8s.io/cluster-name=gcp-a"],
    )
    .unwrap();
    for m in ms["items"].as_array().unwrap() {
        assert_eq!(m["status"]["phase"], "Running", "{m}");
        assert_eq!(m["status"]["nodeRef"]["name"], m["metadata"]["name"]);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_external_cloud_provider_no_ccm_initialises_nodes() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    // The CCM runs, but the kubelets were not started with --cloud-provider=external.
    apply(
        &kc,
        &variant(
            dir.path(),
            "gcp-a.yaml",
            &[
                (
                    CP_PATCH,
                    "      strategicPatches:\n      - |\n        machine:\n          features:\n",
                ),
                (WORKER_PATCH, ""),
            ],
        ),
    );
    eventually("the CCM release deployed", 60, || async {
        get(&kc, &["helmreleaseproxy", "talos-ccm-gcp-a-gcp-a"])
            .filter(|h| h["status"]["status"] == "deployed")
    })
    .await;
    let wkc = workload_kubeconfig(&kc, dir.path(), "gcp-a");
    let nodes = eventually("nodes Ready (Cilium)", 60, || async {
        let v: Value =
            serde_json::from_str(&kubectl(&wkc, &["get", "nodes", "-o", "json"])).ok()?;
        let items = v["items"].as_array()?;
        (items.len() == 3
            && items.iter().all(|n| {
                n["status"]["conditions"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            }))
        .then_some(v)
    })
    .await;
    for n in nodes["items"].as_array().unwrap() {
        assert!(n["spec"]["providerID"].is_null(), "{n}");
        assert!(n["spec"]["taints"].is_null(), "{n}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ms = get(
        &kc,
        &["machines", "-l", "cluster.x-k8s.io/cluster-name=gcp-a"],
    )
    .unwrap();
    for m in ms["items"].as_array().unwrap() {
        assert!(m["status"]["nodeRef"].is_null(), "{m}");
        assert!(
            cond(m, "NodeHealthy")["message"]
                .as_str()
                .unwrap()
                .starts_with("Waiting for a Node with spec.providerID gce://"),
            "{m}"
        );
    }
    let md = get(&kc, &["md", "gcp-a-workers"]).unwrap();
    assert_eq!(cond(&md, "Available")["status"], "False", "{md}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_get_an_ingress_only_from_the_clouds_own_ccm() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    let lb = "      apiserver:\n        service:\n          type: LoadBalancer\n";
    apply(
        &kc,
        &variant(
            dir.path(),
            "gcp-a.yaml",
            &[(
                "      apiserver:\n        service:\n          type: NodePort\n          nodePort: 32379\n",
                lb,
            )],
        ),
    );
    apply(
        &kc,
        &variant(
            dir.path(),
            "aws-b.yaml",
            &[(
                "      useAPIServer: true\n",
                "      useAPIServer: true\n      apiserver:\n        service:\n          type: LoadBalancer\n",
            )],
        ),
    );
    for c in ["gcp-a", "aws-b"] {
        kubectl(
            &kc,
            &[
                "wait",
                "--for=condition=Available",
                &format!("cluster/{c}"),
                "-n",
                "fleet",
                &wait_timeout(),
            ],
        );
    }
    let svc = |c: &str| -> Value {
        let wkc = workload_kubeconfig(&kc, dir.path(), c);
        serde_json::from_str(&kubectl(
            &wkc,
            &[
                "get",
                "service",
                "clustermesh-apiserver",
                "-n",
                "kube-system",
                "-o",
                "json",
            ],
        ))
        .unwrap()
    };
    // AWS's CCM runs a service controller: an ELB, reported by DNS name.
    let b = eventually("aws-b LB ingress", 30, || async {
        let s = svc("aws-b");
        s["status"]["loadBalancer"]["ingress"][0]["hostname"]
            .as_str()
            .is_some()
            .then_some(s)
    })
    .await;
    assert!(
        b["status"]["loadBalancer"]["ingress"][0]["hostname"]
            .as_str()
            .unwrap()
            .ends_with(".elb.eu-central-1.amazonaws.com"),
        "{b}"
    );
    // talos-ccm has no service controller: the GCP LoadBalancer stays pending.
    let a = svc("gcp-a");
    assert_eq!(a["spec"]["type"], "LoadBalancer");
    assert!(a["status"]["loadBalancer"]["ingress"].is_null(), "{a}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_egress_cannot_reach_private_control_planes() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    // The firewall opens tcp/50000 to the egress, but the control plane has no public address.
    apply(
        &kc,
        &variant(dir.path(), "gcp-a.yaml", &[("      publicIP: true\n", "")]),
    );
    let tcp = eventually("bootstrap waits", 60, || async {
        get(&kc, &["taloscontrolplane", "gcp-a-cp"])
            .filter(|t| cond(t, "MachinesBootstrapped")["reason"] == "WaitingForTalosBoot")
    })
    .await;
    let mb = cond(&tcp, "MachinesBootstrapped");
    assert_eq!(mb["status"], "False");
    let msg = mb["message"].as_str().unwrap();
    assert!(
        msg.starts_with("rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 10.0.")
            && msg.contains(":50000: i/o timeout\"")
            && msg.contains("the management egress `203.0.113.10` is public"),
        "{msg}"
    );
    assert_eq!(tcp["status"]["initialized"], false);
    let ms = get(&kc, &["machines", "-l", "cluster.x-k8s.io/control-plane"]).unwrap();
    let addrs = &ms["items"][0]["status"]["addresses"];
    assert_eq!(addrs.as_array().unwrap().len(), 1, "{addrs}");
    assert_eq!(addrs[0]["type"], "InternalIP");
    sim.stop().await;
    // The fixed form: `publicIP: true` gives the control plane an ExternalIP the egress reaches.
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    apply(&kc, &fixtures().join("gcp-a.yaml"));
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=ControlPlaneInitialized",
            "cluster/gcp-a",
            "-n",
            "fleet",
            &wait_timeout(),
        ],
    );
    let ms = get(&kc, &["machines", "-l", "cluster.x-k8s.io/control-plane"]).unwrap();
    let addrs = ms["items"][0]["status"]["addresses"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        addrs
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["InternalIP", "ExternalIP"]
    );
    // Workers (their own template, no publicIP) stay private.
    let ws = eventually("workers provisioned", 60, || async {
        get(
            &kc,
            &[
                "machines",
                "-l",
                "cluster.x-k8s.io/deployment-name=gcp-a-workers",
            ],
        )
        .filter(|l| {
            l["items"].as_array().is_some_and(|a| {
                a.len() == 2 && a.iter().all(|w| w["status"]["addresses"].is_array())
            })
        })
    })
    .await;
    for w in ws["items"].as_array().unwrap() {
        assert_eq!(
            w["status"]["addresses"].as_array().map(Vec::len),
            Some(1),
            "{w}"
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_egress_inside_the_node_network_reaches_private_addresses() {
    if !kubectl_present() {
        return;
    }
    // The management cluster sits in gcp-a's subnet (10.0.0.0/20) and the firewall lets it in.
    let mut sim = start("10.0.15.200").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    apply(
        &kc,
        &variant(
            dir.path(),
            "gcp-a.yaml",
            &[
                ("      publicIP: true\n", ""),
                (
                    "        sourceRanges: [203.0.113.10/32]\n",
                    "        sourceRanges: [10.0.15.200/32]\n",
                ),
            ],
        ),
    );
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=ControlPlaneInitialized",
            "cluster/gcp-a",
            "-n",
            "fleet",
            &wait_timeout(),
        ],
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cabpt_refuses_patch_kinds_talos_1_13_machinery_does_not_know() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    // A Talos 1.14 document: KubeProxyConfig is not registered in machinery v1.13.0.
    let v114 = "      - |\n        apiVersion: v1alpha1\n        kind: KubeProxyConfig\n        disabled: true\n";
    let head = "      strategicPatches:\n";
    let broken = format!("{head}{v114}{}", &CP_PATCH[head.len()..]);
    apply(
        &kc,
        &variant(dir.path(), "gcp-a.yaml", &[(CP_PATCH, &broken)]),
    );
    let machine = eventually(
        "the control-plane machine waits for bootstrap data",
        60,
        || async {
            get(&kc, &["machines", "-l", "cluster.x-k8s.io/control-plane"]).and_then(|l| {
                l["items"].as_array()?.first().cloned().filter(|m| {
                    cond(m, "BootstrapConfigReady")["reason"] == "DataSecretGenerationFailed"
                })
            })
        },
    )
    .await;
    let expected = "failure loading StrategicPatch: error decoding document v1alpha1/KubeProxyConfig/ (line 1): \"KubeProxyConfig\" \"v1alpha1\": not registered";
    assert_eq!(cond(&machine, "BootstrapConfigReady")["message"], expected);
    assert_eq!(machine["status"]["phase"], "Pending");
    let name = machine["metadata"]["name"].as_str().unwrap().to_string();
    let tc = get(&kc, &["talosconfig", &name]).unwrap();
    let das = cond(&tc, "DataSecretAvailable");
    assert_eq!(
        (
            das["status"].as_str(),
            das["reason"].as_str(),
            das["severity"].as_str()
        ),
        (
            Some("False"),
            Some("DataSecretGenerationFailed"),
            Some("Error")
        ),
        "{tc}"
    );
    assert_eq!(das["message"], expected);
    assert_ne!(tc["status"]["ready"], true);
    // Fixed: the v1alpha1 form of the same setting; the stuck machine is replaced.
    let fixed = variant(
        dir.path(),
        "gcp-a.yaml",
        &[(
            CP_PATCH,
            "      strategicPatches:\n      - |\n        cluster:\n          proxy:\n            disabled: true\n          externalCloudProvider:\n            enabled: true\n        machine:\n          features:\n",
        )],
    );
    apply(&kc, &fixed);
    kubectl(
        &kc,
        &["delete", "machine", &name, "-n", "fleet", &wait_timeout()],
    );
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Available",
            "cluster/gcp-a",
            "-n",
            "fleet",
            &wait_timeout(),
        ],
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capg_creates_prefixed_firewall_rules_in_the_project_and_deletes_them_with_the_cluster() {
    if !kubectl_present() {
        return;
    }
    let mut sim = start("203.0.113.10").await;
    let kc = sim.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();
    seed_gcp(&sim, &fixtures().join("gcp-a.yaml"));
    // A rule named without the cluster prefix: CAPG prefixes it, and it still opens apid.
    apply(
        &kc,
        &variant(
            dir.path(),
            "gcp-a.yaml",
            &[(
                "      - name: gcp-a-talos-apid\n",
                "      - name: talos-apid\n",
            )],
        ),
    );
    kubectl(
        &kc,
        &[
            "wait",
            "--for=condition=Available",
            "cluster/gcp-a",
            "-n",
            "fleet",
            &wait_timeout(),
        ],
    );
    let world = sim.sim.as_ref().unwrap().world().clone();
    let names = || {
        let mut n: Vec<String> = world
            .gcp
            .network_firewalls("demo-project", "demo-net")
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(),
        [
            "allow-gcp-a-cluster",
            "allow-gcp-a-healthchecks",
            "gcp-a-mesh",
            "gcp-a-talos-apid"
        ]
    );
    let rules = world.gcp.network_firewalls("demo-project", "demo-net");
    let hc = rules
        .iter()
        .find(|r| r["name"] == "allow-gcp-a-healthchecks")
        .unwrap();
    assert_eq!(
        hc["sourceRanges"],
        serde_json::json!(["35.191.0.0/16", "130.211.0.0/22"])
    );
    assert_eq!(hc["targetTags"], serde_json::json!(["gcp-a-control-plane"]));
    let apid = rules
        .iter()
        .find(|r| r["name"] == "gcp-a-talos-apid")
        .unwrap();
    assert_eq!(apid["allowed"][0]["IPProtocol"], "tcp");
    kubectl(
        &kc,
        &["delete", "cluster", "gcp-a", "-n", "fleet", &wait_timeout()],
    );
    assert!(names().is_empty(), "{:?}", names());
    sim.stop().await;
}
