//! An unmodified kubectl against the simulator: api-resources, apply --server-side (and its
//! conflicts), get -o json|yaml|wide, wait, describe, delete, and a workload cluster.
//! Skips loudly without kubectl, unless MESHFLEET_REQUIRE_KUBECTL=1.

mod common;

use std::path::Path;
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
            "!!! SKIPPING kubectl tests: `kubectl` not found on PATH (set MESHFLEET_REQUIRE_KUBECTL=1 to fail instead)"
        );
    }
    found
}

fn kubectl(kc: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(kc: &Path, args: &[&str]) -> String {
    let (good, out, err) = kubectl(kc, args);
    assert!(good, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_verbs() {
    if !kubectl_present() {
        return;
    }
    let crds = crds_dir();
    let mut sim = Sim::start(|c| {
        c.crds_dir = crds.clone();
        c.egress_ip = Some("203.0.113.10".parse().unwrap());
        c.speed = 20.0;
    })
    .await;
    let kc = sim.kubeconfig.clone();
    let fx = fixtures();
    let f = |n: &str| fx.join(n).to_string_lossy().into_owned();
    seed_gcp(&sim, &fx.join("gcp-a.yaml"));
    let out = ok(&kc, &["api-resources"]);
    for r in [
        "clusters",
        "machinedeployments",
        "gcpclusters",
        "awsclusters",
        "taloscontrolplanes",
        "helmchartproxies",
        "secrets",
    ] {
        assert!(out.contains(r), "api-resources lacks {r}:\n{out}");
    }
    let out = ok(
        &kc,
        &[
            "apply",
            "--server-side",
            "-f",
            &f("namespace.yaml"),
            "-f",
            &f("gcp-a.yaml"),
            "-f",
            &f("aws-b.yaml"),
        ],
    );
    assert!(
        out.contains("cluster.cluster.x-k8s.io/gcp-a serverside-applied"),
        "{out}"
    );
    // Idempotent re-apply.
    ok(&kc, &["apply", "--server-side", "-f", &f("gcp-a.yaml")]);
    // Another manager changing an owned field conflicts, unless forced.
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md.yaml");
    std::fs::write(&md, "apiVersion: cluster.x-k8s.io/v1beta2\nkind: MachineDeployment\nmetadata:\n  name: gcp-a-workers\n  namespace: fleet\nspec:\n  clusterName: gcp-a\n  replicas: 3\n").unwrap();
    let (good, _, err) = kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "someone-else",
            "-f",
            md.to_str().unwrap(),
        ],
    );
    assert!(
        !good && err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    ok(
        &kc,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "someone-else",
            "--force-conflicts",
            "-f",
            md.to_str().unwrap(),
        ],
    );
    let json: Value = serde_json::from_str(&ok(
        &kc,
        &["get", "md", "gcp-a-workers", "-n", "fleet", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(json["spec"]["replicas"], 3);
    // Strict field validation with the CRD schemas.
    if crds.is_some() {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "apiVersion: cluster.x-k8s.io/v1beta2\nkind: Cluster\nmetadata:\n  name: bad\n  namespace: fleet\nspec:\n  notAField: 1\n").unwrap();
        let (good, _, err) = kubectl(
            &kc,
            &["apply", "--server-side", "-f", bad.to_str().unwrap()],
        );
        assert!(!good && err.contains("notAField"), "{err}");
    }
    ok(
        &kc,
        &[
            "wait",
            "--for=condition=Ready",
            "gcpcluster/gcp-a",
            "-n",
            "fleet",
            &wait_timeout(),
        ],
    );
    ok(
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
    let list: Value =
        serde_json::from_str(&ok(&kc, &["get", "clusters", "-n", "fleet", "-o", "json"])).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let yaml = ok(
        &kc,
        &["get", "cluster", "gcp-a", "-n", "fleet", "-o", "yaml"],
    );
    assert!(yaml.contains("phase: Provisioned"), "{yaml}");
    let wide = ok(
        &kc,
        &[
            "get",
            "machines",
            "-n",
            "fleet",
            "-o",
            "wide",
            "-l",
            "cluster.x-k8s.io/cluster-name=gcp-a",
        ],
    );
    assert_eq!(wide.lines().count(), 1 + 4, "{wide}");
    // Server-side Table: printer columns (from the CRD when loaded) with values.
    assert!(
        wide.lines().skip(1).all(|l| l.contains("Running")),
        "{wide}"
    );
    let clusters = ok(&kc, &["get", "clusters", "-n", "fleet"]);
    assert!(
        clusters.lines().next().unwrap().contains("PHASE") && clusters.contains("Provisioned"),
        "{clusters}"
    );
    let desc = ok(&kc, &["describe", "cluster", "gcp-a", "-n", "fleet"]);
    assert!(
        desc.contains("ControlPlaneInitialized") && desc.contains("Provisioned"),
        "{desc}"
    );
    // The workload cluster through its kubeconfig Secret.
    let b64 = ok(
        &kc,
        &[
            "get",
            "secret",
            "gcp-a-kubeconfig",
            "-n",
            "fleet",
            "-o",
            "jsonpath={.data.value}",
        ],
    );
    use base64::Engine;
    let wkc = dir.path().join("gcp-a.kubeconfig");
    std::fs::write(
        &wkc,
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap(),
    )
    .unwrap();
    ok(
        &wkc,
        &[
            "wait",
            "--for=condition=Ready",
            "nodes",
            "--all",
            &wait_timeout(),
        ],
    );
    let nodes = ok(&wkc, &["get", "nodes", "-o", "wide"]);
    assert!(nodes.contains("gcp-a-cp-"), "{nodes}");
    assert!(
        nodes.lines().next().unwrap().contains("STATUS")
            && nodes.lines().skip(1).all(|l| l.contains(" Ready ")),
        "{nodes}"
    );
    let cm = ok(
        &wkc,
        &[
            "get",
            "configmap",
            "cilium-config",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.cluster-name}",
        ],
    );
    assert_eq!(cm, "gcp-a");
    // Generator commands send protobuf bodies.
    ok(&wkc, &["create", "namespace", "probe"]);
    ok(
        &wkc,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            "probe",
            "--from-literal=k=v",
        ],
    );
    assert_eq!(
        ok(
            &wkc,
            &[
                "get",
                "secret",
                "s",
                "-n",
                "probe",
                "-o",
                "jsonpath={.data.k}"
            ]
        ),
        "dg=="
    );
    // Pod Security admission: a namespace labelled `enforce: restricted` refuses a privileged
    // Pod with the real admission's message (kubernetes/pod-security-admission@v0.36.2
    // `admission/admission.go`, `policy/check_*.go`), and admits `mesh test`'s echo Pod.
    let psa = dir.path().join("psa.yaml");
    std::fs::write(
        &psa,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: locked\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: priv\n  namespace: locked\nspec:\n  containers:\n  - name: app\n    image: busybox\n    securityContext:\n      privileged: true\n",
    )
    .unwrap();
    let (good, _, err) = kubectl(&wkc, &["apply", "-f", psa.to_str().unwrap()]);
    assert!(!good, "{err}");
    assert!(
        err.contains("pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"app\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)"),
        "{err}"
    );
    let echo = dir.path().join("echo.yaml");
    std::fs::write(
        &echo,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\n  namespace: locked\nspec:\n  automountServiceAccountToken: false\n\
         \x20 securityContext:\n    runAsNonRoot: true\n    runAsUser: 65534\n    seccompProfile:\n      type: RuntimeDefault\n\
         \x20 containers:\n  - name: echo\n    image: registry.k8s.io/e2e-test-images/agnhost:2.52\n    args: [netexec, --http-port=8080]\n\
         \x20   securityContext:\n      allowPrivilegeEscalation: false\n      readOnlyRootFilesystem: true\n      capabilities:\n        drop: [ALL]\n",
    )
    .unwrap();
    ok(
        &wkc,
        &["apply", "--server-side", "-f", echo.to_str().unwrap()],
    );
    assert_eq!(
        ok(&wkc, &["get", "pod", "echo", "-n", "locked", "-o", "name"]).trim(),
        "pod/echo"
    );
    // Delete (kubectl waits for the finalizers to finish the ordered teardown).
    let out = ok(
        &kc,
        &["delete", "cluster", "gcp-a", "-n", "fleet", &wait_timeout()],
    );
    assert!(out.contains("deleted"), "{out}");
    let (good, _, err) = kubectl(&kc, &["get", "cluster", "gcp-a", "-n", "fleet"]);
    assert!(!good && err.contains("NotFound"), "{err}");
    let (_, out, _) = kubectl(&kc, &["get", "gcpclusters", "-n", "fleet", "-o", "name"]);
    assert!(out.trim().is_empty(), "infrastructure left behind: {out}");
    sim.stop().await;
}
