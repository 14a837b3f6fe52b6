//! Every Cilium values document meshfleet produces, rendered by the real Cilium 1.19.5 chart
//! through a real Helm engine (helm-python-sdk, the Helm v4 Go SDK behind ctypes): each
//! `cilium-values.yaml`, each Cilium HelmChartProxy's values in `fleet/`, and the values
//! `cilium_proxy_with_peers` gives once every peer's endpoint is known. The chart `required`s
//! an address for every peer (REAL-STACK.md §1), so this is what proves the first install and
//! every later upgrade go through.
//!
//! Skipped with a loud message when `python3 -c "import helm_python"` fails or the chart is
//! missing; a failure instead when `MESHFLEET_REQUIRE_HELM=1` (CI).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use meshfleet_render::{Rendered, cilium_proxy_with_peers, render};
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm/render_chart.py");

fn required() -> bool {
    std::env::var("MESHFLEET_REQUIRE_HELM").is_ok_and(|v| v == "1")
}

fn skip(why: &str) -> Option<PathBuf> {
    assert!(
        !required(),
        "MESHFLEET_REQUIRE_HELM=1 but the Helm test cannot run: {why}"
    );
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         SKIPPED: the real-chart Helm test: {why}\n\
         install it with `python3 -m pip install helm-python-sdk pyyaml`\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

/// The Cilium chart, when it and a Helm engine are available.
fn chart() -> Option<PathBuf> {
    let dir = std::env::var_os("MESHFLEET_CHART_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/charts"
            ))
        });
    let chart = dir.join("cilium-1.19.5.tgz");
    if !chart.is_file() {
        return skip(&format!("no chart at `{}`", chart.display()));
    }
    let probe = Command::new("python3")
        .args(["-c", "import helm_python, yaml"])
        .output();
    match probe {
        Ok(o) if o.status.success() => Some(chart),
        Ok(o) => skip(&format!(
            "python3 cannot import helm_python: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => skip(&format!("no python3: {e}")),
    }
}

/// One values document to render, and the peers its clustermesh Secret must name.
struct Doc {
    name: String,
    values: String,
    peers: Vec<String>,
}

/// Every values document of a rendered fleet, deduplicated by text (a cluster's file and its
/// proxy's values are the same text, which the conformance test asserts).
fn documents(text: &str, lb: bool) -> Vec<Doc> {
    let fleet = common::parse(text);
    let plan = common::plan(&fleet);
    let r: Rendered = render(&fleet, &plan).expect("render");
    let mut docs: Vec<Doc> = Vec::new();
    let push = |docs: &mut Vec<Doc>, name: String, values: String, peers: Vec<String>| {
        if !docs.iter().any(|d| d.values == values) {
            docs.push(Doc {
                name,
                values,
                peers,
            });
        }
    };
    for f in r
        .files
        .iter()
        .filter(|f| f.path.ends_with("/cilium-values.yaml"))
    {
        push(&mut docs, f.path.clone(), f.contents.clone(), Vec::new());
    }
    for p in r
        .fleet_objects
        .iter()
        .filter(|o| o["spec"]["chartName"] == "cilium")
    {
        let values = p["spec"]["valuesTemplate"].as_str().expect("values");
        push(
            &mut docs,
            format!("fleet/{}", p["metadata"]["name"]),
            values.to_owned(),
            Vec::new(),
        );
    }
    if fleet.spec.mesh.enabled {
        for c in &fleet.spec.clusters {
            let peers = common::peer_endpoints(&plan, &c.name, lb);
            let proxy = cilium_proxy_with_peers(&fleet, &plan, &c.name, &peers).expect("proxy");
            let values = proxy["spec"]["valuesTemplate"].as_str().expect("values");
            push(
                &mut docs,
                format!("{} with {} peer(s)", c.name, peers.len()),
                values.to_owned(),
                peers.keys().cloned().collect(),
            );
        }
    }
    docs
}

/// Render a batch through one python process; returns one result per document.
fn helm_render(chart: &std::path::Path, docs: &[Doc]) -> Vec<Value> {
    let request = json!({
        "chart": chart,
        "documents": docs.iter().map(|d| json!({"name": d.name, "values": d.values})).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "the Helm helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("helper JSON");
    assert_eq!(results.len(), docs.len());
    results
}

/// Render every document of a fleet variant; panics with every failure at once. Returns
/// the helper's results (empty when the test is skipped).
fn installs(variant: &str, text: &str, lb: bool) -> Vec<Value> {
    let Some(chart) = chart() else {
        return Vec::new();
    };
    let docs = documents(text, lb);
    assert!(!docs.is_empty());
    let results = helm_render(&chart, &docs);
    let mut problems = Vec::new();
    for (d, r) in docs.iter().zip(&results) {
        if r["ok"] != true {
            problems.push(format!("{}: {}", d.name, r["error"]));
            continue;
        }
        let named: Vec<&str> = r["clustermesh"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if named.len() != d.peers.len() || d.peers.iter().any(|p| !named.contains(&p.as_str())) {
            problems.push(format!(
                "{}: the clustermesh Secret names {named:?}, expected {:?}",
                d.name, d.peers
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{variant}: {} of {} values documents fail with the real chart:\n{}",
        problems.len(),
        docs.len(),
        problems.join("\n")
    );
    eprintln!("{variant}: {} values documents install", docs.len());
    results
}

/// What every meshed values document must give the agents: the fleet's cache TTL, MCS-API
/// on or off as the fleet says, and Cilium's default that policies select the local cluster
/// unless they name another (`policy-default-local-cluster`, left at the chart's `true`).
fn mesh_services(results: &[Value], ttl: &str, mcs: bool) {
    assert!(!results.is_empty());
    for r in results {
        let c = &r["config"];
        assert_eq!(c["clustermesh-cache-ttl"], ttl, "{r}");
        assert_eq!(
            c["clustermesh-enable-mcs-api"],
            if mcs { "true" } else { "false" },
            "{r}"
        );
        assert_eq!(c["policy-default-local-cluster"], "true", "{r}");
        let job = r["templates"].as_array().is_some_and(|t| {
            t.iter()
                .any(|p| p == "cilium/templates/clustermesh-coredns-mcsapi/job.yaml")
        });
        assert_eq!(job, mcs, "CoreDNS auto-configuration job: {r}");
    }
}

fn example_with(replacements: &[(&str, &str)]) -> String {
    let mut text = common::example_fleet_text();
    for (from, to) in replacements {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn mesh_nodeport_tunnel_vxlan_no_encryption() {
    let results = installs("example", &common::example_fleet_text(), false);
    if !results.is_empty() {
        mesh_services(&results, "1m", false);
    }
}

#[test]
fn mesh_with_mcs_api_and_cache_ttl() {
    let results = installs(
        "MCS-API + cacheTTL 90s",
        &example_with(&[(
            "encryption: none",
            "encryption: none\n    services: { mcsApi: true, cacheTTL: 90s }",
        )]),
        false,
    );
    if !results.is_empty() {
        mesh_services(&results, "90s", true);
    }
}

#[test]
fn mesh_off() {
    installs(
        "mesh off",
        &example_with(&[("enabled: true", "enabled: false")]),
        false,
    );
}

#[test]
fn mesh_nodeport_tunnel_ipsec() {
    installs(
        "NodePort + ipsec",
        &example_with(&[("encryption: none", "encryption: ipsec")]),
        false,
    );
}

#[test]
fn mesh_nodeport_native_wireguard() {
    installs(
        "NodePort + native + wireguard",
        &example_with(&[
            ("routing: tunnel", "routing: native"),
            ("encryption: none", "encryption: wireguard"),
        ]),
        false,
    );
}

#[test]
fn mesh_loadbalancer_geneve_wireguard() {
    installs(
        "LoadBalancer + geneve + wireguard",
        &common::aws_fleet_text(
            "apiserverService: LoadBalancer, tunnelProtocol: geneve, encryption: wireguard",
        ),
        true,
    );
}

#[test]
fn mesh_loadbalancer_native_ipsec() {
    installs(
        "LoadBalancer + native + ipsec",
        &common::aws_fleet_text(
            "apiserverService: LoadBalancer, routing: native, encryption: ipsec",
        ),
        true,
    );
}

#[test]
fn one_cluster() {
    let text = common::aws_fleet_text("apiserverService: NodePort");
    let one = text
        .split("    - name: aws-use1")
        .next()
        .expect("first cluster")
        .to_owned();
    installs("1 cluster", &one, false);
}

#[test]
fn one_hundred_clusters() {
    installs("100 clusters", &common::large_fleet_text(100, 255), false);
}

/// The check is real: the values meshfleet rendered before (peers with only `enabled` and
/// `port`) are refused by the chart, as REAL-STACK.md §1 found.
#[test]
fn the_chart_refuses_a_peer_without_an_endpoint() {
    let Some(chart) = chart() else {
        return;
    };
    let fleet = common::parse(&common::example_fleet_text());
    let r = render(&fleet, &common::plan(&fleet)).expect("render");
    let mut values = r.clusters[0].cilium.values.clone();
    values["clustermesh"]["config"]["clusters"] =
        json!({"gcp-use1": {"enabled": true, "port": 32379}});
    let doc = Doc {
        name: "peer without endpoint".into(),
        values: serde_saphyr::to_string(&values).expect("yaml"),
        peers: Vec::new(),
    };
    let result = &helm_render(&chart, &[doc])[0];
    assert_eq!(result["ok"], false, "{result}");
    assert!(
        result["error"]
            .as_str()
            .unwrap_or_default()
            .contains("missing clustermesh.apiserver.config.clusters.address"),
        "{result}"
    );
}
