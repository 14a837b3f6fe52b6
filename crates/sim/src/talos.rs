//! What the simulated Talos bootstrap provider (CABPT) and Talos read from a TalosConfig's
//! patches: whether every strategic patch loads with the Talos machinery CABPT vendors, and the
//! machine-config switches other controllers depend on (the external cloud provider).
//!
//! CABPT v0.6.12 vendors `github.com/siderolabs/talos/pkg/machinery` v1.13.0
//! (siderolabs/cluster-api-bootstrap-provider-talos:`go.mod`@v0.6.12) and loads each entry of
//! `spec.strategicPatches` with `configpatcher.LoadPatch`, wrapping a failure as
//! `failure loading StrategicPatch: …` (`controllers/talosconfig_controller.go`@v0.6.12).
//! `LoadPatch` decodes the documents with the config loader; a document whose `kind` is not in
//! the machinery's registry fails with `"<kind>" "<apiVersion>": not registered`
//! (siderolabs/talos:`pkg/machinery/config/internal/registry/registry.go`@pkg/machinery/v1.13.0),
//! wrapped as `error decoding document <apiVersion>/<kind>/<name> (line N): …`
//! (`pkg/machinery/config/configloader/internal/decoder/decoder.go`@pkg/machinery/v1.13.0).

use serde_json::Value;

/// Every document kind `pkg/machinery` v1.13.0 registers besides `v1alpha1`, each under
/// `apiVersion: v1alpha1` only: the `registry.Register` calls in
/// siderolabs/talos:`pkg/machinery/config/types/{block,cri,hardware,network,runtime,security,siderolink}/*.go`@pkg/machinery/v1.13.0.
/// Talos 1.14's `KubeNetworkConfig`, `KubePrismConfig`, `KubeAdmissionControlConfig`,
/// `KubeAuthenticationConfig`, `KubeProxyConfig` and `KubeFlannelCNIConfig` are not among them.
pub const REGISTERED_KINDS: &[&str] = &[
    // block
    "ExistingVolumeConfig",
    "ExternalVolumeConfig",
    "RawVolumeConfig",
    "SwapVolumeConfig",
    "UserVolumeConfig",
    "VolumeConfig",
    "ZswapConfig",
    // cri
    "RegistryAuthConfig",
    "RegistryMirrorConfig",
    "RegistryTLSConfig",
    // hardware
    "PCIDriverRebindConfig",
    // network
    "BlackholeRouteConfig",
    "BondConfig",
    "BridgeConfig",
    "NetworkDefaultActionConfig",
    "DHCPv4Config",
    "DHCPv6Config",
    "DummyLinkConfig",
    "EthernetConfig",
    "HCloudVIPConfig",
    "HostnameConfig",
    "KubeSpanConfig",
    "KubeSpanEndpointsConfig",
    "Layer2VIPConfig",
    "LinkConfig",
    "LinkAliasConfig",
    "ResolverConfig",
    "RoutingRuleConfig",
    "NetworkRuleConfig",
    "StaticHostConfig",
    "TCPProbeConfig",
    "TimeSyncConfig",
    "VLANConfig",
    "VRFConfig",
    "WireguardConfig",
    // runtime
    "EnvironmentConfig",
    "EventSinkConfig",
    "ExtensionServiceConfig",
    "KmsgLogConfig",
    "OOMConfig",
    "WatchdogTimerConfig",
    // security
    "ImageVerificationConfig",
    "TrustedRootsConfig",
    // siderolink
    "SideroLinkConfig",
];

/// Keys that make a document the v1alpha1 machine config even without `apiVersion`
/// (`ManifestDeprecatedKey*` in `decoder.go`@pkg/machinery/v1.13.0).
const V1ALPHA1_KEYS: &[&str] = &["machine", "cluster", "debug", "persist"];

/// The machine config a TalosConfig's patches produce, as far as the simulator cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineConfig {
    /// The kubelet runs with `--cloud-provider=external`: Talos sets it when
    /// `cluster.externalCloudProvider.enabled` is true
    /// (siderolabs/talos:`internal/app/machined/pkg/controllers/k8s/kubelet_config.go` and
    /// `kubelet_spec.go`@v1.13.0), or it is set directly through
    /// `machine.kubelet.extraArgs.cloud-provider: external`
    /// (siderolabs/talos-cloud-controller-manager:`docs/install.md`@v1.9.1).
    pub external_cloud_provider: bool,
    /// The API server's Pod Security admission configuration (a `PodSecurityConfiguration`:
    /// `defaults` and `exemptions`), from the `PodSecurity` entry of
    /// `cluster.apiServer.admissionControl` (siderolabs/talos:
    /// `pkg/machinery/config/types/v1alpha1/v1alpha1_types.go`@v1.13.0, `AdmissionControl`).
    pub pod_security: Option<Value>,
}

/// Load a TalosConfig spec's patches as CABPT does: `Err` with CABPT's message when one does
/// not load, else the switches they set.
pub fn load(spec: &Value) -> Result<MachineConfig, String> {
    let mut cfg = MachineConfig::default();
    // JSON 6902 `configPatches` are applied before the strategic patches
    // (`talosconfig_controller.go`@v0.6.12).
    for op in spec
        .get("configPatches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        json_patch_op(op, &mut cfg);
    }
    for p in spec
        .get("strategicPatches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = p.as_str().unwrap_or("");
        load_patch(text, &mut cfg).map_err(|e| format!("failure loading StrategicPatch: {e}"))?;
    }
    Ok(cfg)
}

/// What a JSON 6902 operation sets of the switches.
fn json_patch_op(op: &Value, cfg: &mut MachineConfig) {
    if !matches!(
        op.get("op").and_then(Value::as_str),
        Some("add" | "replace")
    ) {
        return;
    }
    let path = op.get("path").and_then(Value::as_str).unwrap_or("");
    let value = op.get("value").cloned().unwrap_or(Value::Null);
    let mut doc = Value::Null;
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    // Rebuild the document the operation writes into, then read it like a strategic patch.
    let mut cur = &mut doc;
    for seg in &segs {
        *cur = serde_json::json!({});
        cur = &mut cur[seg.replace("~1", "/").replace("~0", "~")];
    }
    *cur = value;
    v1alpha1_switches(&doc, cfg);
}

fn v1alpha1_switches(doc: &Value, cfg: &mut MachineConfig) {
    if doc.pointer("/cluster/externalCloudProvider/enabled") == Some(&Value::Bool(true))
        || doc
            .pointer("/machine/kubelet/extraArgs/cloud-provider")
            .and_then(Value::as_str)
            == Some("external")
    {
        cfg.external_cloud_provider = true;
    }
    if let Some(plugins) = doc
        .pointer("/cluster/apiServer/admissionControl")
        .and_then(Value::as_array)
        && let Some(ps) = plugins
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some("PodSecurity"))
    {
        cfg.pod_security = ps.get("configuration").cloned();
    }
}

/// One YAML document of a patch with the line its mapping starts on (1-based, in the patch).
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut first: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((first.unwrap_or(i + 1), std::mem::take(&mut cur)));
            first = None;
            continue;
        }
        let t = line.trim();
        if first.is_none() && !t.is_empty() && !t.starts_with('#') {
            first = Some(i + 1);
        }
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push((first.unwrap_or(1), cur));
    docs
}

fn load_patch(text: &str, cfg: &mut MachineConfig) -> Result<(), String> {
    let mut parsed = Vec::new();
    for (line, doc) in documents(text) {
        let v: Value = match serde_saphyr::from_str(&doc) {
            Ok(v) => v,
            Err(e) => return Err(format!("decode error: {e}")),
        };
        match v {
            Value::Null => continue,
            // A YAML list is a JSON patch (`configpatcher.LoadPatch` falls back to it).
            Value::Array(ops) => {
                for op in &ops {
                    json_patch_op(op, cfg);
                }
                continue;
            }
            Value::Object(_) => parsed.push((line, v)),
            _ => return Err(format!("expected a YAML document at line {line}")),
        }
    }
    for (line, v) in &parsed {
        let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let id_kind = if kind.is_empty() { "v1alpha1" } else { kind };
        let version = if V1ALPHA1_KEYS.iter().any(|k| v.get(*k).is_some()) {
            "v1alpha1"
        } else {
            api_version
        };
        let err = match (version, kind) {
            ("v1alpha1", "") | (_, "v1alpha1") => None,
            (_, "") => Some("missing kind".to_string()),
            ("", _) => Some("missing apiVersion".to_string()),
            (ver, k) if ver == "v1alpha1" && REGISTERED_KINDS.contains(&k) => None,
            (ver, k) => Some(format!("\"{k}\" \"{ver}\": not registered")),
        };
        if let Some(e) = err {
            return Err(format!(
                "error decoding document {api_version}/{id_kind}/{name} (line {line}): {e}"
            ));
        }
        if version == "v1alpha1" && (kind.is_empty() || kind == "v1alpha1") {
            v1alpha1_switches(v, cfg);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn talos_1_14_kinds_are_refused_with_cabpts_message() {
        let spec = json!({"strategicPatches": [
            "machine:\n  kubelet:\n    nodeIP:\n      validSubnets: [10.0.0.0/8]\n",
            "apiVersion: v1alpha1\nkind: KubeProxyConfig\ndisabled: true\n",
        ]});
        assert_eq!(
            load(&spec).unwrap_err(),
            "failure loading StrategicPatch: error decoding document v1alpha1/KubeProxyConfig/ (line 1): \"KubeProxyConfig\" \"v1alpha1\": not registered"
        );
        // The line is the document's within its patch; names come from `name`.
        let spec = json!({"strategicPatches": [
            "# comment\nmachine: {}\n---\napiVersion: v1alpha1\nkind: KubePrismConfig\nname: x\n"
        ]});
        assert!(
            load(&spec)
                .unwrap_err()
                .contains("v1alpha1/KubePrismConfig/x (line 4)")
        );
    }

    #[test]
    fn registered_and_v1alpha1_documents_load() {
        let spec = json!({"strategicPatches": [
            "cluster:\n  externalCloudProvider:\n    enabled: true\n",
            "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n",
            "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\n",
        ]});
        assert_eq!(
            load(&spec).unwrap(),
            MachineConfig {
                external_cloud_provider: true,
                pod_security: None,
            }
        );
        assert!(!load(&json!({})).unwrap().external_cloud_provider);
    }

    #[test]
    fn the_api_servers_pod_security_configuration_is_read() {
        let spec = json!({"strategicPatches": [
            "cluster:\n  apiServer:\n    admissionControl:\n      - name: PodSecurity\n        configuration:\n          defaults: { enforce: baseline }\n          exemptions: { namespaces: [kube-system] }\n",
        ]});
        let c = load(&spec).unwrap().pod_security.unwrap();
        assert_eq!(c["defaults"]["enforce"], "baseline");
        assert_eq!(c["exemptions"]["namespaces"][0], "kube-system");
    }

    #[test]
    fn other_refusals() {
        let e = load(&json!({"strategicPatches": ["kind: TimeSyncConfig\n"]})).unwrap_err();
        assert!(e.ends_with("missing apiVersion"), "{e}");
        let e =
            load(&json!({"strategicPatches": ["apiVersion: v1alpha2\nkind: TimeSyncConfig\n"]}))
                .unwrap_err();
        assert!(
            e.ends_with("\"TimeSyncConfig\" \"v1alpha2\": not registered"),
            "{e}"
        );
    }

    #[test]
    fn external_cloud_provider_through_kubelet_args_and_json_patches() {
        let kubelet = json!({"strategicPatches": [
            "machine:\n  kubelet:\n    extraArgs:\n      cloud-provider: external\n"]});
        assert!(load(&kubelet).unwrap().external_cloud_provider);
        let ops = json!({"configPatches": [
            {"op": "add", "path": "/cluster/externalCloudProvider", "value": {"enabled": true}}]});
        assert!(load(&ops).unwrap().external_cloud_provider);
        let yaml_ops = json!({"strategicPatches": [
            "- op: add\n  path: /cluster/externalCloudProvider/enabled\n  value: true\n"]});
        assert!(load(&yaml_ops).unwrap().external_cloud_provider);
    }
}
