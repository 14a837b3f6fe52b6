//! Behaviour of the renderer: what each object says, determinism, no secrets, snapshots.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use meshfleet_render::{CLUSTER_LABEL, FLEET_LABEL, RenderError, Rendered, render};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn example() -> (meshfleet_spec::Fleet, meshfleet_plan::Plan, Rendered) {
    let fleet = common::parse(&common::example_fleet_text());
    let plan = common::plan(&fleet);
    let rendered = render(&fleet, &plan).expect("render");
    (fleet, plan, rendered)
}

fn file<'a>(r: &'a Rendered, path: &str) -> &'a str {
    &r.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file `{path}`"))
        .contents
}

fn objects_of<'a>(r: &'a Rendered, cluster: &str, kind: &str) -> Vec<&'a Value> {
    r.clusters
        .iter()
        .find(|c| c.name == cluster)
        .expect("cluster")
        .objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("yaml")
}

#[test]
fn layout_has_every_file() {
    let (_, _, r) = example();
    let paths: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
    for c in ["gcp-euw1", "gcp-use1", "aws-euw1"] {
        for f in [
            "cluster.yaml",
            "cilium-values.yaml",
            "talos-controlplane.patch.yaml",
            "talos-worker.patch.yaml",
        ] {
            assert!(
                paths.contains(&format!("{c}/{f}").as_str()),
                "{c}/{f} missing"
            );
        }
    }
    for p in [
        "fleet/00-namespace.yaml",
        "fleet/10-cilium-helmchartproxies.yaml",
        "fleet/20-ccm-helmchartproxies.yaml",
        "prerequisites/gcp.yaml",
        "prerequisites/aws.yaml",
    ] {
        assert!(paths.contains(&p), "{p} missing");
    }
}

#[test]
fn rendering_is_deterministic() {
    let (fleet, plan, r) = example();
    assert_eq!(r, render(&fleet, &plan).expect("render"));
}

#[test]
fn every_object_is_labelled_and_namespaced() {
    let (fleet, _, r) = example();
    let ns = fleet.metadata.name.as_str();
    for c in &r.clusters {
        for o in &c.objects {
            let m = &o["metadata"];
            assert_eq!(m["namespace"], ns, "{o}");
            assert_eq!(m["labels"][FLEET_LABEL], ns);
            assert_eq!(m["labels"][CLUSTER_LABEL], c.name.as_str());
        }
    }
    for o in &r.fleet_objects {
        assert_eq!(o["metadata"]["labels"][FLEET_LABEL], ns);
    }
    // The user's cluster labels land on the Cluster.
    let cluster = objects_of(&r, "gcp-euw1", "Cluster")[0];
    assert_eq!(cluster["metadata"]["labels"]["env"], "prod");
}

#[test]
fn cluster_networks_come_from_the_plan() {
    let (_, plan, r) = example();
    for cp in &plan.clusters {
        let cluster = objects_of(&r, &cp.name, "Cluster")[0];
        assert_eq!(cluster["apiVersion"], "cluster.x-k8s.io/v1beta2");
        let net = &cluster["spec"]["clusterNetwork"];
        assert_eq!(net["pods"]["cidrBlocks"][0], cp.network.pods.to_string());
        assert_eq!(
            net["services"]["cidrBlocks"][0],
            cp.network.services.to_string()
        );
        let patch = yaml(file(
            &r,
            &format!("{}/talos-controlplane.patch.yaml", cp.name),
        ));
        assert_eq!(
            patch["cluster"]["network"]["podSubnets"][0],
            cp.network.pods.to_string()
        );
        assert_eq!(patch["cluster"]["network"]["cni"]["name"], "none");
        assert_eq!(patch["cluster"]["proxy"]["disabled"], true);
        assert_eq!(patch["machine"]["features"]["kubePrism"]["port"], 7445);
        let values = yaml(file(&r, &format!("{}/cilium-values.yaml", cp.name)));
        assert_eq!(values["cluster"]["id"], cp.mesh_id);
        assert_eq!(values["cluster"]["name"], cp.name.as_str());
    }
}

#[test]
fn gcp_cluster_uses_the_custom_network_and_opens_talos_to_management() {
    let (_, plan, r) = example();
    let gcp = objects_of(&r, "gcp-euw1", "GCPCluster")[0];
    let net = &gcp["spec"]["network"];
    assert_eq!(net["name"], "meshfleet");
    assert_eq!(net["autoCreateSubnetworks"], false);
    let nodes = plan
        .cluster("gcp-euw1")
        .expect("planned")
        .network
        .nodes
        .to_string();
    assert_eq!(net["subnets"][0]["cidrBlock"], nodes.as_str());
    assert_eq!(
        gcp["spec"]["failureDomains"],
        serde_json::json!(["europe-west1-b", "europe-west1-c", "europe-west1-d"])
    );
    let rules = net["firewall"]["firewallRules"].as_array().expect("rules");
    let talos = rules
        .iter()
        .find(|r| {
            r["allowed"][0]["ports"][0] == "50000" && r["sourceRanges"][0] == "203.0.113.10/32"
        })
        .expect("a 50000 rule from the management egress");
    assert_eq!(
        talos["targetTags"],
        serde_json::json!(["gcp-euw1-control-plane"])
    );
    let mesh = rules
        .iter()
        .find(|r| r["allowed"][0]["ports"][0] == "32379")
        .expect("clustermesh-apiserver rule");
    let aws_nodes = plan.cluster("aws-euw1").expect("planned").network.nodes;
    let covered = mesh["sourceRanges"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(|s| s.as_str()?.parse::<ipnet::IpNet>().ok())
        .any(|s| s.contains(&aws_nodes));
    assert!(
        covered,
        "peers' nodes may reach the clustermesh-apiserver: {mesh}"
    );
    let tpl = objects_of(&r, "gcp-euw1", "GCPMachineTemplate")[0];
    assert_eq!(
        tpl["spec"]["template"]["spec"]["image"],
        "projects/my-project/global/images/talos-v1-13-9-amd64"
    );
}

#[test]
fn aws_cluster_is_v1beta2_with_cilium_ports_and_an_nlb() {
    let (_, plan, r) = example();
    let aws = objects_of(&r, "aws-euw1", "AWSCluster")[0];
    assert_eq!(aws["apiVersion"], "infrastructure.cluster.x-k8s.io/v1beta2");
    let nodes = plan.cluster("aws-euw1").expect("planned").network.nodes;
    assert_eq!(
        aws["spec"]["network"]["vpc"]["cidrBlock"],
        nodes.to_string()
    );
    for s in aws["spec"]["network"]["subnets"]
        .as_array()
        .expect("subnets")
    {
        let cidr: ipnet::IpNet = s["cidrBlock"]
            .as_str()
            .expect("cidr")
            .parse()
            .expect("cidr");
        assert!(
            nodes.contains(&cidr),
            "subnet {cidr} outside the VPC {nodes}"
        );
    }
    let cni: Vec<i64> = aws["spec"]["network"]["cni"]["cniIngressRules"]
        .as_array()
        .expect("cni rules")
        .iter()
        .filter_map(|r| r["fromPort"].as_i64())
        .collect();
    for port in [8472, 4240, 50000, 50001] {
        assert!(cni.contains(&port), "cniIngressRules lack {port}: {cni:?}");
    }
    let cp_rules = aws["spec"]["network"]["additionalControlPlaneIngressRules"]
        .as_array()
        .expect("cp rules");
    assert!(
        cp_rules
            .iter()
            .any(|r| r["fromPort"] == 50000 && r["cidrBlocks"][0] == "203.0.113.10/32")
    );
    assert_eq!(
        aws["spec"]["controlPlaneLoadBalancer"]["loadBalancerType"],
        "nlb"
    );
    // Security groups admit the node CIDRs of the cluster and its mesh peers through the
    // links, never the whole internet: CAPA opens NodePorts to 0.0.0.0/0 unless
    // `nodePortIngressRuleCidrBlocks` narrows them.
    let gcp_nodes: Vec<String> = plan
        .clusters
        .iter()
        .filter(|c| c.provider == meshfleet_spec::Provider::Gcp)
        .map(|c| c.network.nodes.to_string())
        .collect();
    let node_ports: Vec<&str> = aws["spec"]["network"]["nodePortIngressRuleCidrBlocks"]
        .as_array()
        .expect("node port sources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(node_ports[0], nodes.to_string());
    for g in &gcp_nodes {
        let g: ipnet::IpNet = g.parse().unwrap();
        assert!(
            node_ports
                .iter()
                .any(|n| n.parse::<ipnet::IpNet>().unwrap().contains(&g)),
            "{g} not admitted to NodePorts: {node_ports:?}"
        );
    }
    let text = serde_json::to_string(&aws["spec"]["network"]).unwrap();
    assert!(!text.contains("0.0.0.0/0"), "{text}");
    for o in &r
        .clusters
        .iter()
        .find(|c| c.name == "aws-euw1")
        .expect("aws")
        .objects
    {
        let v = o["apiVersion"].as_str().expect("apiVersion");
        assert_ne!(v, "infrastructure.cluster.x-k8s.io/v1beta1", "{o}");
    }
}

#[test]
fn worker_pools_spread_over_zones_with_one_health_check_per_pool() {
    let (fleet, _, r) = example();
    for c in &fleet.spec.clusters {
        let mds = objects_of(&r, &c.name, "MachineDeployment");
        let mhcs = objects_of(&r, &c.name, "MachineHealthCheck");
        // One MachineDeployment per pool and zone, each pinned to its zone.
        assert_eq!(mds.len(), c.worker_pools.len() * c.zones.len());
        for pool in &c.worker_pools {
            let of_pool: Vec<&&Value> = mds
                .iter()
                .filter(|md| {
                    md["spec"]["template"]["metadata"]["labels"]["meshfleet.io/pool"]
                        == pool.name.as_str()
                })
                .collect();
            let zones: Vec<&str> = of_pool
                .iter()
                .map(|md| {
                    md["spec"]["template"]["spec"]["failureDomain"]
                        .as_str()
                        .expect("zone")
                })
                .collect();
            assert_eq!(
                zones,
                c.zones.iter().map(String::as_str).collect::<Vec<_>>()
            );
            let total: u64 = of_pool
                .iter()
                .map(|md| md["spec"]["replicas"].as_u64().expect("n"))
                .sum();
            assert_eq!(total, u64::from(pool.replicas), "{}/{}", c.name, pool.name);
            for md in &of_pool {
                assert_eq!(md["apiVersion"], "cluster.x-k8s.io/v1beta2");
                let n = md["spec"]["replicas"].as_u64().expect("n");
                assert!(n == u64::from(pool.replicas) / 3 || n == u64::from(pool.replicas) / 3 + 1);
            }
        }
        // The pool's health check selects every zone's machines of that pool, and can
        // remediate at least one (an integer, never a percentage that rounds to 0).
        assert_eq!(
            mhcs.len(),
            c.worker_pools.iter().filter(|p| p.replicas >= 2).count()
        );
        for mhc in &mhcs {
            assert_eq!(mhc["apiVersion"], "cluster.x-k8s.io/v1beta2");
            let max = mhc["spec"]["remediation"]["triggerIf"]["unhealthyLessThanOrEqualTo"]
                .as_u64()
                .expect("an integer");
            assert!(max >= 1);
            let sel = mhc["spec"]["selector"]["matchLabels"]
                .as_object()
                .expect("sel");
            let selected = mds
                .iter()
                .filter(|md| {
                    sel.iter()
                        .all(|(k, v)| &md["spec"]["template"]["metadata"]["labels"][k] == v)
                })
                .count();
            assert_eq!(selected, c.zones.len());
        }
        let tcp = objects_of(&r, &c.name, "TalosControlPlane")[0];
        assert_eq!(
            tcp["spec"]["version"],
            fleet.spec.versions.kubernetes.as_str()
        );
        assert!(tcp["spec"]["version"].as_str().expect("v").starts_with('v'));
        assert_eq!(tcp["spec"]["replicas"], c.control_plane.replicas);
    }
}

#[test]
fn health_check_thresholds_never_round_to_zero() {
    let fleet = common::parse(&common::aws_fleet_text("apiserverService: NodePort"));
    let r = render(&fleet, &common::plan(&fleet)).expect("render");
    let mhcs = objects_of(&r, "aws-euw1", "MachineHealthCheck");
    // `general` (4 replicas) gets one allowing 1 (40% of 4 rounded down); `single` none.
    assert_eq!(mhcs.len(), 1);
    assert_eq!(mhcs[0]["metadata"]["name"], "aws-euw1-workers-general");
    assert_eq!(
        mhcs[0]["spec"]["remediation"]["triggerIf"]["unhealthyLessThanOrEqualTo"],
        1
    );
    // 4 replicas over 3 zones: 2, 1, 1, named after the zones.
    let mds = objects_of(&r, "aws-euw1", "MachineDeployment");
    let general: Vec<(String, u64)> = mds
        .iter()
        .filter(|m| {
            m["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("general"))
        })
        .map(|m| {
            (
                m["metadata"]["name"].as_str().expect("n").to_owned(),
                m["spec"]["replicas"].as_u64().expect("r"),
            )
        })
        .collect();
    assert_eq!(
        general,
        [
            ("aws-euw1-workers-general-a".to_owned(), 2),
            ("aws-euw1-workers-general-b".to_owned(), 1),
            ("aws-euw1-workers-general-c".to_owned(), 1)
        ]
    );
}

#[test]
fn control_planes_get_public_addresses_when_the_management_egress_is_public() {
    let (_, _, r) = example();
    for c in &r.clusters {
        for t in c.objects.iter().filter(|o| {
            o["kind"]
                .as_str()
                .is_some_and(|k| k.ends_with("MachineTemplate"))
        }) {
            let name = t["metadata"]["name"].as_str().expect("name");
            let public = &t["spec"]["template"]["spec"]["publicIP"];
            if name.contains("-control-plane-") {
                assert_eq!(public, true, "{name}");
            } else {
                assert!(public.is_null(), "{name}: workers stay private");
            }
        }
    }
    let r = variant(&[(
        "egressCIDRs: [203.0.113.10/32]",
        "egressCIDRs: [10.200.0.0/24]",
    )]);
    for c in &r.clusters {
        assert!(
            c.objects
                .iter()
                .all(|o| o["spec"]["template"]["spec"]["publicIP"].is_null())
        );
    }
}

#[test]
fn ssh_key_is_left_out_of_machine_templates_when_absent() {
    let (_, _, r) = example();
    let aws = &r.clusters[2];
    assert_eq!(aws.objects[1]["spec"]["sshKeyName"], "ops");
    let fleet = common::parse(&common::aws_fleet_text("apiserverService: NodePort"));
    let r = render(&fleet, &common::plan(&fleet)).expect("render");
    for c in &r.clusters {
        // The cluster says "no key pair" (CAPA would otherwise use one named `default`)…
        assert_eq!(c.objects[1]["kind"], "AWSCluster");
        assert_eq!(c.objects[1]["spec"]["sshKeyName"], "");
        // …and the templates say nothing, so they inherit it.
        for t in c
            .objects
            .iter()
            .filter(|o| o["kind"] == "AWSMachineTemplate")
        {
            assert!(t["spec"]["template"]["spec"].get("sshKeyName").is_none());
        }
    }
}

#[test]
fn cilium_values_follow_the_design() {
    let (_, plan, r) = example();
    let v = yaml(file(&r, "gcp-euw1/cilium-values.yaml"));
    assert_eq!(v["ipam"]["mode"], "kubernetes");
    assert_eq!(v["kubeProxyReplacement"], true);
    assert_eq!(v["k8sServiceHost"], "localhost");
    assert_eq!(v["k8sServicePort"], 7445);
    assert_eq!(v["cgroup"]["autoMount"]["enabled"], false);
    assert_eq!(v["cgroup"]["hostRoot"], "/sys/fs/cgroup");
    assert_eq!(v["clustermesh"]["useAPIServer"], true);
    assert_eq!(v["clustermesh"]["maxConnectedClusters"], 255);
    assert_eq!(v["clustermesh"]["apiserver"]["service"]["type"], "NodePort");
    assert_eq!(v["clustermesh"]["apiserver"]["service"]["nodePort"], 32379);
    // One shared CA: certificates are generated in-cluster from the existing `cilium-ca`.
    assert_eq!(
        v["clustermesh"]["apiserver"]["tls"]["auto"]["method"],
        "cronJob"
    );
    assert_eq!(v["hubble"]["tls"]["auto"]["method"], "cronJob");
    assert!(v.get("tls").is_none(), "no CA material in values");
    // The first install names no peer (the chart requires an endpoint for each); the map is
    // there, empty, so the clustermesh Secrets exist from the start.
    assert_eq!(v["clustermesh"]["config"]["enabled"], true);
    assert_eq!(
        v["clustermesh"]["config"]["clusters"],
        serde_json::json!({})
    );
    // GCP and AWS in one mesh: the underlay MTU is pinned below both clouds' VPN paths.
    assert_eq!(v["MTU"], 1400);

    // `up` adds peers as their endpoints become known: map form, keyed by name.
    let fleet = common::parse(&common::example_fleet_text());
    let peers = common::peer_endpoints(&plan, "gcp-euw1", false);
    let values =
        meshfleet_render::cilium_values_with_peers(&fleet, &plan, "gcp-euw1", &peers).expect("v");
    let named = values["clustermesh"]["config"]["clusters"]
        .as_object()
        .expect("map");
    let expected: Vec<&String> = plan.mesh_peers["gcp-euw1"].iter().collect();
    assert_eq!(named.keys().collect::<Vec<_>>(), expected);
    assert!(!named.contains_key("gcp-euw1"));
    for (name, e) in &peers {
        assert_eq!(named[name]["ips"], serde_json::json!(e.ips));
        assert_eq!(named[name]["port"], 32379);
        assert_eq!(named[name]["enabled"], true);
    }
    // Everything but the peers is what `render` gives.
    let mut without = values.clone();
    without["clustermesh"]["config"]["clusters"] = serde_json::json!({});
    assert_eq!(without, r.clusters[0].cilium.values);
    // The proxy is the rendered one with those values.
    let proxy =
        meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, "gcp-euw1", &peers).expect("p");
    assert_eq!(proxy["metadata"], r.clusters[0].cilium.proxy["metadata"]);
    assert_eq!(
        yaml(proxy["spec"]["valuesTemplate"].as_str().expect("t")),
        values
    );
    let none =
        meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, "gcp-euw1", &Default::default())
            .expect("p");
    assert_eq!(none, r.clusters[0].cilium.proxy);
}

#[test]
fn peers_without_endpoints_or_outside_the_plan_are_errors() {
    let (fleet, plan, _) = example();
    let bad = |peer: &str, e: meshfleet_render::PeerEndpoint| {
        let peers = std::collections::BTreeMap::from([(peer.to_owned(), e)]);
        meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, "gcp-euw1", &peers)
            .expect_err("refused")
            .to_string()
    };
    let ok = meshfleet_render::PeerEndpoint {
        ips: vec!["10.0.0.1".into()],
        address: None,
        port: 32379,
    };
    let e = bad(
        "gcp-use1",
        meshfleet_render::PeerEndpoint {
            ips: vec![],
            address: None,
            port: 32379,
        },
    );
    assert!(e.contains("neither `ips` nor `address`"), "{e}");
    let e = bad("gcp-euw1", ok.clone());
    assert!(e.contains("not a mesh peer"), "{e}");
    let e = bad("nope", ok.clone());
    assert!(e.contains("`nope`"), "{e}");
    let e = bad(
        "gcp-use1",
        meshfleet_render::PeerEndpoint {
            ips: vec!["x".into()],
            ..ok.clone()
        },
    );
    assert!(e.contains("not an IP"), "{e}");
    let e = meshfleet_render::cilium_proxy_with_peers(&fleet, &plan, "nope", &Default::default())
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("no cluster `nope`"), "{e}");
}

#[test]
fn cilium_capabilities_are_the_chart_defaults_without_sys_module() {
    let Some(dir) = common::schema_dir() else {
        return;
    };
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.join("cilium/values.yaml")).expect("values.yaml"),
    )
    .expect("yaml");
    let (_, _, r) = example();
    let v = yaml(file(&r, "aws-euw1/cilium-values.yaml"));
    for key in ["ciliumAgent", "cleanCiliumState"] {
        let defaults: Vec<&Value> = chart["securityContext"]["capabilities"][key]
            .as_array()
            .expect("chart default")
            .iter()
            .filter(|c| *c != "SYS_MODULE")
            .collect();
        assert!(
            chart["securityContext"]["capabilities"][key]
                .as_array()
                .expect("default")
                .iter()
                .any(|c| c == "SYS_MODULE"),
            "the chart default of {key} no longer has SYS_MODULE; revisit the values"
        );
        let ours: Vec<&Value> = v["securityContext"]["capabilities"][key]
            .as_array()
            .expect("ours")
            .iter()
            .collect();
        assert_eq!(ours, defaults, "{key}");
    }
}

fn variant(replacements: &[(&str, &str)]) -> Rendered {
    let mut text = common::example_fleet_text();
    for (from, to) in replacements {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    let fleet = common::parse(&text);
    render(&fleet, &common::plan(&fleet)).expect("render")
}

#[test]
fn mesh_variants_reach_the_values() {
    let fleet = common::parse(&common::aws_fleet_text(
        "routing: native, encryption: ipsec, apiserverService: LoadBalancer",
    ));
    let plan = common::plan(&fleet);
    let r = render(&fleet, &plan).expect("render");
    let v = yaml(file(&r, "aws-use1/cilium-values.yaml"));
    assert_eq!(v["routingMode"], "native");
    assert_eq!(v["ipv4NativeRoutingCIDR"], "10.64.0.0/10");
    // AWS only, two regions: inter-region paths carry 1500, not the 9001 AWS reports.
    assert_eq!(v["MTU"], 1500);
    assert!(v.get("tunnelProtocol").is_none());
    assert_eq!(v["encryption"]["enabled"], true);
    assert_eq!(v["encryption"]["type"], "ipsec");
    assert_eq!(
        v["clustermesh"]["apiserver"]["service"]["type"],
        "LoadBalancer"
    );
    assert!(
        v["clustermesh"]["apiserver"]["service"]
            .get("nodePort")
            .is_none()
    );
    let peers = common::peer_endpoints(&plan, "aws-use1", true);
    let with = meshfleet_render::cilium_values_with_peers(&fleet, &plan, "aws-use1", &peers)
        .expect("values");
    assert_eq!(
        with["clustermesh"]["config"]["clusters"]["aws-euw1"]["port"],
        2379
    );
    assert_eq!(
        with["clustermesh"]["config"]["clusters"]["aws-euw1"]["address"],
        "aws-euw1.lb.example.com"
    );
    // LoadBalancer Services on AWS: the AWS CCM is delivered and owns the node controllers.
    let kinds: Vec<_> = r.clusters[1].addons.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            meshfleet_render::AddonKind::TalosCcm,
            meshfleet_render::AddonKind::AwsCcm
        ]
    );
    assert_eq!(
        r.clusters[1].addons[0].values["enabledControllers"],
        serde_json::json!(["node-csr-approval"])
    );
    assert!(
        r.clusters[1].addons[1].values["args"]
            .to_string()
            .contains("--cluster-name=aws-use1")
    );

    let r = variant(&[
        ("tunnelProtocol: vxlan", "tunnelProtocol: geneve"),
        ("encryption: none", "encryption: wireguard"),
    ]);
    let v = yaml(file(&r, "aws-euw1/cilium-values.yaml"));
    assert_eq!(v["tunnelProtocol"], "geneve");
    assert_eq!(v["encryption"]["type"], "wireguard");
    let aws = &r.clusters[2].objects[1];
    let cni = aws["spec"]["network"]["cni"]["cniIngressRules"].to_string();
    assert!(
        cni.contains("6081") && cni.contains("51871") && !cni.contains("8472"),
        "{cni}"
    );

    let r = variant(&[("enabled: true", "enabled: false")]);
    let v = yaml(file(&r, "gcp-euw1/cilium-values.yaml"));
    assert_eq!(v["clustermesh"]["useAPIServer"], false);
    assert!(v["clustermesh"].get("config").is_none());
    // No mesh: no MTU pin, and nothing for Cilium to wait for.
    assert!(v.get("MTU").is_none());
    assert!(!r.clusters[0].cilium.held_back);
}

#[test]
fn readyz_fix_is_gcp_only_and_per_talos_line() {
    let (_, _, r) = example();
    let gcp = yaml(file(&r, "gcp-euw1/talos-controlplane.patch.yaml"));
    assert_eq!(
        gcp["cluster"]["apiServer"]["extraArgs"]["anonymous-auth"],
        "true"
    );
    let aws = yaml(file(&r, "aws-euw1/talos-controlplane.patch.yaml"));
    assert!(aws["cluster"]["apiServer"].get("extraArgs").is_none());
    let psa = &gcp["cluster"]["apiServer"]["admissionControl"][0];
    assert_eq!(psa["name"], "PodSecurity");
    assert_eq!(psa["configuration"]["defaults"]["enforce"], "baseline");
    assert_eq!(psa["configuration"]["defaults"]["warn"], "restricted");
    assert_eq!(
        psa["configuration"]["exemptions"]["namespaces"][0],
        "kube-system"
    );

    let r = variant(&[
        ("talos: v1.13.9", "talos: v1.14.1"),
        (
            "  providers:\n",
            "  talos: { patchFormat: multiDocument }\n  providers:\n",
        ),
    ]);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(file(&r, "gcp-euw1/talos-controlplane.patch.yaml"))
            .expect("yaml");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "KubeNetworkConfig",
            "KubeFlannelCNIConfig",
            "KubeProxyConfig",
            "KubePrismConfig",
            "KubeAdmissionControlConfig",
            "KubeTalosAPIAccessConfig",
            "KubeAuthenticationConfig"
        ]
    );
    let auth = &docs[7]["configuration"]["anonymous"];
    assert_eq!(auth["enabled"], true);
    assert_eq!(
        auth["conditions"],
        serde_json::json!([{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}])
    );
    let aws: Vec<Value> =
        serde_saphyr::from_multiple(file(&r, "aws-euw1/talos-controlplane.patch.yaml"))
            .expect("yaml");
    assert!(aws.iter().all(|d| d["kind"] != "KubeAuthenticationConfig"));
}

#[test]
fn helm_chart_proxies_select_one_cluster_each() {
    let (fleet, _, r) = example();
    let proxies: Vec<&Value> = r
        .fleet_objects
        .iter()
        .filter(|o| o["kind"] == "HelmChartProxy")
        .collect();
    // A Cilium and a Talos CCM proxy per cluster (NodePort: no AWS CCM).
    assert_eq!(proxies.len(), 2 * fleet.spec.clusters.len());
    for (c, rc) in fleet.spec.clusters.iter().zip(&r.clusters) {
        let s = &rc.cilium.proxy["spec"];
        let sel = &s["clusterSelector"]["matchLabels"];
        assert_eq!(sel[CLUSTER_LABEL], c.name.as_str());
        // Held back until `up` has delivered the mesh CA.
        assert!(rc.cilium.held_back);
        assert_eq!(
            sel[meshfleet_render::MESH_CA_LABEL],
            meshfleet_render::MESH_CA_DELIVERED
        );
        assert_eq!(s["repoURL"], "https://helm.cilium.io/");
        assert_eq!(s["chartName"], "cilium");
        assert_eq!(s["version"], "1.19.5");
        assert_eq!(s["namespace"], "kube-system");
        assert_eq!(rc.addons.len(), 1);
        let ccm = &rc.addons[0];
        assert_eq!(ccm.kind, meshfleet_render::AddonKind::TalosCcm);
        let s = &ccm.proxy["spec"];
        assert_eq!(
            ccm.proxy["metadata"]["name"],
            format!("talos-ccm-{}", c.name)
        );
        assert_eq!(s["repoURL"], "oci://ghcr.io/siderolabs/charts");
        assert_eq!(s["chartName"], "talos-cloud-controller-manager");
        assert_eq!(s["version"], "0.4.5");
        // Not held back: nodes must be initialised before anything schedules.
        assert!(
            s["clusterSelector"]["matchLabels"]
                .get(meshfleet_render::MESH_CA_LABEL)
                .is_none()
        );
        assert_eq!(ccm.values["daemonSet"]["enabled"], true);
        assert_eq!(
            ccm.values["enabledControllers"],
            serde_json::json!(["cloud-node", "node-csr-approval"])
        );
    }
    // The namespace is applied before anything in it.
    assert_eq!(r.fleet_objects[0]["kind"], "Namespace");
}

#[test]
fn prerequisites_describe_network_nat_image_and_vpcs() {
    let (_, plan, r) = example();
    let gcp = yaml(file(&r, "prerequisites/gcp.yaml"));
    assert_eq!(gcp["network"]["routingMode"], "GLOBAL");
    assert_eq!(gcp["network"]["autoCreateSubnetworks"], false);
    assert_eq!(gcp["subnetworks"].as_array().expect("subnets").len(), 2);
    assert_eq!(
        gcp["routers"].as_array().expect("routers").len(),
        2,
        "one per region"
    );
    assert_eq!(gcp["image"]["name"], "talos-v1-13-9-amd64");
    assert_eq!(gcp["image"]["bucket"], "talos-images-01-7f3a");
    // One owner per firewall rule: every planned rule is cluster-scoped, so CAPG creates it
    // from the GCPCluster (and deletes it with the cluster); `gcp setup` owns none.
    assert!(gcp["firewallRules"].as_array().expect("rules").is_empty());
    for c in r
        .clusters
        .iter()
        .filter(|c| c.objects[1]["kind"] == "GCPCluster")
    {
        let rules = c.objects[1]["spec"]["network"]["firewall"]["firewallRules"]
            .as_array()
            .expect("rules");
        assert!(!rules.is_empty());
        for rule in rules {
            let name = rule["name"].as_str().expect("name");
            // CAPG keeps names that start with the cluster name as they are.
            assert!(name.starts_with(&format!("{}-", c.name)), "{name}");
            assert!(name.len() <= 63, "{name}");
        }
    }
    let aws = yaml(file(&r, "prerequisites/aws.yaml"));
    assert_eq!(aws["regions"][0]["region"], "eu-west-1");
    assert_eq!(
        aws["regions"][0]["vpcs"][0]["cidrBlock"],
        plan.cluster("aws-euw1")
            .expect("planned")
            .network
            .nodes
            .to_string()
    );
    assert_eq!(
        aws["regions"][0]["ami"]["name"],
        "talos-v1.13.9-eu-west-1-amd64"
    );
    assert_eq!(
        aws["interconnects"]["links"],
        serde_json::json!([{"kind": "gcpToAws", "via": "haVpn", "count": 1}])
    );
}

#[test]
fn no_rendered_file_contains_a_private_key() {
    let mut renders = vec![example().2];
    for text in [
        common::large_fleet_text(40, 255),
        common::example_fleet_text().replace("encryption: none", "encryption: ipsec"),
        common::example_fleet_text().replace("talos: v1.13.9", "talos: v1.14.1"),
    ] {
        let fleet = common::parse(&text);
        renders.push(render(&fleet, &common::plan(&fleet)).expect("render"));
    }
    for r in &renders {
        for f in &r.files {
            assert!(
                !f.contents.contains("PRIVATE KEY"),
                "{} holds a private key",
                f.path
            );
            assert!(
                !f.contents.contains("ca.key"),
                "{} mentions a CA key",
                f.path
            );
        }
    }
}

#[test]
fn stale_plan_and_reserved_names_are_errors() {
    let (fleet, mut plan, _) = example();
    plan.clusters.retain(|c| c.name != "gcp-use1");
    let err = render(&fleet, &plan).expect_err("stale plan");
    assert!(matches!(err, RenderError::NotPlanned { ref cluster } if cluster == "gcp-use1"));
    assert!(err.to_string().contains("`gcp-use1`"));

    // The spec rejects a cluster named after a layout directory; the renderer still refuses one
    // when a library caller hands it a fleet that skipped validation.
    let text = common::example_fleet_text().replace("name: gcp-use1", "name: fleet");
    assert!(
        meshfleet_spec::parse(&text).is_err(),
        "validation rejects it first"
    );
    let mut fleet = common::parse(&common::example_fleet_text());
    fleet.spec.clusters[1].name = "fleet".to_owned();
    let err = render(&fleet, &common::plan(&fleet)).expect_err("reserved");
    assert!(matches!(err, RenderError::ReservedName { .. }), "{err}");
}

#[test]
fn snapshot_example_fleet() {
    let (_, _, r) = example();
    for f in &r.files {
        let name = f.path.replace(['/', '.'], "_");
        insta::assert_snapshot!(name, f.contents);
    }
}

/// A digest of a big render: any change in any byte shows up, without a 100-cluster golden.
#[test]
fn snapshot_large_fleet_digest() {
    let fleet = common::parse(&common::large_fleet_text(100, 255));
    let r = render(&fleet, &common::plan(&fleet)).expect("render");
    let mut hash = Sha256::new();
    let mut bytes = 0;
    for f in &r.files {
        hash.update(f.path.as_bytes());
        hash.update([0]);
        hash.update(f.contents.as_bytes());
        bytes += f.contents.len();
    }
    let mut kinds = BTreeMap::<&str, usize>::new();
    for o in r.all_objects() {
        *kinds
            .entry(o["kind"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    let mut s = format!(
        "files: {}\nbytes: {bytes}\nsha256: {:x}\nobjects:\n",
        r.files.len(),
        hash.finalize()
    );
    for (k, n) in kinds {
        let _ = writeln!(s, "  {k}: {n}");
    }
    insta::assert_snapshot!(s);
}

#[test]
fn templates_are_named_by_content_and_references_follow() {
    let (_, _, r) = example();
    let names = |r: &Rendered, kind: &str| -> Vec<String> {
        r.clusters[0]
            .objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| o["metadata"]["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let cp_template = &names(&r, "GCPMachineTemplate")[0];
    assert!(
        cp_template.starts_with("gcp-euw1-control-plane-"),
        "{cp_template}"
    );
    let tcp = objects_of(&r, "gcp-euw1", "TalosControlPlane")[0];
    assert_eq!(
        tcp["spec"]["infrastructureTemplate"]["name"],
        cp_template.as_str()
    );
    let md = objects_of(&r, "gcp-euw1", "MachineDeployment")[0];
    let spec = &md["spec"]["template"]["spec"];
    assert_eq!(
        spec["infrastructureRef"]["name"],
        names(&r, "GCPMachineTemplate")[1].as_str()
    );
    assert_eq!(
        spec["bootstrap"]["configRef"]["name"],
        names(&r, "TalosConfigTemplate")[0].as_str()
    );

    // A worker's machine type changes: only that pool's machine template gets a new name.
    let changed = variant(&[("machineType: n2-standard-4", "machineType: n2-standard-8")]);
    assert_eq!(names(&changed, "GCPMachineTemplate")[0], *cp_template);
    assert_ne!(
        names(&changed, "GCPMachineTemplate")[1],
        names(&r, "GCPMachineTemplate")[1]
    );
    assert_eq!(
        names(&changed, "TalosConfigTemplate"),
        names(&r, "TalosConfigTemplate")
    );
    // Pod Security lives in the control-plane patch only: the workers' template keeps its name,
    // while a new Talos version changes the worker config and so its name.
    let changed = variant(&[("enforce: baseline", "enforce: restricted")]);
    assert_eq!(
        names(&changed, "TalosConfigTemplate"),
        names(&r, "TalosConfigTemplate")
    );
    let changed = variant(&[("talos: v1.13.9", "talos: v1.13.8")]);
    assert_ne!(
        names(&changed, "TalosConfigTemplate"),
        names(&r, "TalosConfigTemplate")
    );
}

#[test]
fn required_providers_cover_the_fleet() {
    use meshfleet_render::{ProviderType, required_providers};
    let (fleet, _, _) = example();
    let reqs = required_providers(&fleet);
    let specs: Vec<(ProviderType, String)> = reqs
        .iter()
        .map(|r| (r.type_, r.clusterctl_spec()))
        .collect();
    assert_eq!(
        specs,
        [
            (ProviderType::Core, "cluster-api:v1.14.0".to_owned()),
            (ProviderType::Bootstrap, "talos:v0.6.12".to_owned()),
            (ProviderType::ControlPlane, "talos:v0.5.12".to_owned()),
            (ProviderType::Infrastructure, "aws:v2.11.1".to_owned()),
            (ProviderType::Infrastructure, "gcp:v1.12.0".to_owned()),
            (ProviderType::Addon, "helm:v0.6.4".to_owned()),
        ]
    );
    // Every kind meshfleet renders is served by one of them.
    let r = render(&fleet, &common::plan(&fleet)).expect("render");
    for o in r.all_objects() {
        let (v, k) = (
            o["apiVersion"].as_str().expect("v"),
            o["kind"].as_str().expect("k"),
        );
        if k == "Namespace" {
            continue;
        }
        assert!(
            reqs.iter().any(|r| r.kinds.contains(&(v, k))),
            "no provider serves {v} {k}"
        );
    }
    assert!(reqs[2].why.contains("v1.12"), "{}", reqs[2].why);
    let aws_only = common::parse(&common::aws_fleet_text("apiserverService: NodePort"));
    assert!(
        required_providers(&aws_only)
            .iter()
            .all(|r| r.name != "gcp")
    );
}

#[test]
fn management_egress_decides_public_addresses() {
    let mut fleet = common::parse(&common::example_fleet_text());
    assert!(meshfleet_render::management_is_public(&fleet));
    fleet.spec.management.egress_cidrs = vec!["10.1.0.0/16".into(), "100.64.1.0/24".into()];
    assert!(!meshfleet_render::management_is_public(&fleet));
    fleet
        .spec
        .management
        .egress_cidrs
        .push("2001:db8::/48".into());
    assert!(meshfleet_render::management_is_public(&fleet));
}
