//! Talos: the control plane (`TalosControlPlane`, CACPPT v0.5 `v1alpha3`), the worker bootstrap
//! template (`TalosConfigTemplate`, CABPT v0.6 `v1alpha3`) and the strategic patches both carry.
//!
//! Strategic merge patches only: Talos ≥ 1.12 rejects JSON6902 patches in multi-document
//! configs.
//!
//! # Which form
//!
//! The patches are applied by the bootstrap provider, not by Talos: CABPT v0.6.12 decodes
//! them with the Talos machinery it vendors, v1.13.0
//! (siderolabs/cluster-api-bootstrap-provider-talos:`go.mod`@v0.6.12), which has no
//! `KubeNetworkConfig`, `KubePrismConfig`, `KubeProxyConfig`, `KubeAdmissionControlConfig`,
//! `KubeAuthenticationConfig`, `KubeTalosAPIAccessConfig` or `KubeFlannelCNIConfig`, so a patch
//! with one of them fails (`failure loading StrategicPatch`,
//! `controllers/talosconfig_controller.go`@v0.6.12). Talos 1.14 still accepts the v1alpha1
//! keys, so the v1alpha1 form (valid against the Talos v1.13 schema) is emitted for every Talos
//! line. The multi-document form, one document per concern, is kept behind
//! `spec.talos.patchFormat: multiDocument` (validated: Talos ≥ 1.14 only) for a bootstrap
//! provider built on newer machinery.
//!
//! # Cloud controller manager
//!
//! `cluster.externalCloudProvider.enabled: true` makes Talos start the kubelet with
//! `--cloud-provider=external` (siderolabs/talos:`internal/app/machined/pkg/controllers/k8s/kubelet_spec.go`@v1.13.9),
//! so each node waits for the CCM meshfleet delivers (see the `ccm` module) to set its
//! providerID. The control plane also allows Kubernetes access to the Talos API with the
//! `os:reader` role from `kube-system`: the Talos CCM reads the nodes' platform metadata
//! through it (siderolabs/talos-cloud-controller-manager:`docs/install.md`@v1.9.1, and the
//! chart's `talos.dev/v1alpha1` ServiceAccount with `roles: [os:reader]`).
//!
//! # The GCP `/readyz` health check
//!
//! CAPG's API-server load balancer probes `https://<node>:6443/readyz` without credentials.
//! Talos starts kube-apiserver with anonymous authentication off, so the probe gets 401, every
//! backend is unhealthy and the control-plane endpoint never answers. What is allowed depends
//! on the patch form:
//!
//! - v1alpha1 form (every Talos line; Talos ≤ 1.13 always passes `--anonymous-auth` and offers no way to drop it, and
//!   kube-apiserver refuses to start when that flag is set together with an
//!   `AuthenticationConfiguration` that has an `anonymous` section (siderolabs/talos#11324,
//!   "--anonymous-auth flag cannot be set when anonymous field is configured"). The
//!   path-restricted form (KEP-4633) is therefore out of reach, and the least-privileged option
//!   that works is `anonymous-auth: "true"` in `cluster.apiServer.extraArgs`. Anonymous requests
//!   then authenticate as `system:anonymous` in `system:unauthenticated`, which default RBAC binds
//!   only to `system:public-info-viewer` (GET `/healthz`, `/livez`, `/readyz`, `/version`);
//!   every other request is still denied with 403).
//! - multi-document form (Talos ≥ 1.14, which drives kube-apiserver with `--authentication-config` from a
//!   `KubeAuthenticationConfig` document, so the renderer sets `anonymous.enabled: true` with
//!   `conditions` limited to `/livez`, `/readyz` and `/healthz` (stable since Kubernetes 1.34,
//!   `apiserver.config.k8s.io/v1`; `v1beta1` before). Anonymous access is then impossible on
//!   any other path, whatever RBAC says).
//!
//! Only GCP clusters get this: CAPA's API-server NLB uses a TCP health check, which needs no
//! anonymous access at all.

use std::collections::BTreeMap;

use meshfleet_spec::{PatchFormat, PodSecurity, Provider};
use serde::Serialize;

use crate::capi::Infra;
use crate::meta::{self, Object, ObjectRef};
use crate::{Ctx, RenderError, api, yaml};

/// The Talos API roles and namespaces the Talos CCM needs.
const TALOS_API_ROLES: [&str; 1] = ["os:reader"];
const TALOS_API_NAMESPACES: [&str; 1] = ["kube-system"];

/// KubePrism's port; Cilium reaches the API server through it (`k8sServicePort`).
pub const KUBEPRISM_PORT: u16 = 7445;

/// Paths an unauthenticated load-balancer probe may read (Talos ≥ 1.14 form).
const HEALTH_PATHS: [&str; 3] = ["/livez", "/readyz", "/healthz"];

/// The strategic patches of one cluster, one YAML document per string.
#[derive(Debug, Clone)]
pub struct Patches {
    /// Patches for control-plane machines.
    pub control_plane: Vec<String>,
    /// Patches for worker machines.
    pub worker: Vec<String>,
}

impl Patches {
    /// Build both patch sets in the fleet's patch form (see the module documentation).
    pub fn build(ctx: &Ctx<'_>) -> Result<Self, RenderError> {
        match ctx.fleet.spec.talos.patch_format {
            // Validation only allows it on Talos ≥ 1.14; the renderer trusts the fleet.
            PatchFormat::MultiDocument => multidoc(ctx),
            PatchFormat::V1alpha1 => legacy(ctx),
        }
    }

    /// `talos-controlplane.patch.yaml`.
    pub fn control_plane_file(&self) -> String {
        join(&self.control_plane)
    }

    /// `talos-worker.patch.yaml`.
    pub fn worker_file(&self) -> String {
        join(&self.worker)
    }
}

fn join(docs: &[String]) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(d);
    }
    out
}

fn needs_health_probe_access(ctx: &Ctx<'_>) -> bool {
    ctx.cluster.provider == Provider::Gcp
}

// ---- Pod Security admission (shared by both forms) ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSecurityConfiguration {
    api_version: &'static str,
    kind: &'static str,
    defaults: PsaDefaults,
    exemptions: PsaExemptions,
}

#[derive(Serialize)]
struct PsaDefaults {
    enforce: &'static str,
    #[serde(rename = "enforce-version")]
    enforce_version: &'static str,
    audit: &'static str,
    #[serde(rename = "audit-version")]
    audit_version: &'static str,
    warn: &'static str,
    #[serde(rename = "warn-version")]
    warn_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PsaExemptions {
    usernames: Vec<String>,
    runtime_classes: Vec<String>,
    namespaces: Vec<String>,
}

fn pod_security(ps: &PodSecurity) -> PodSecurityConfiguration {
    PodSecurityConfiguration {
        api_version: "pod-security.admission.config.k8s.io/v1",
        kind: "PodSecurityConfiguration",
        defaults: PsaDefaults {
            enforce: ps.enforce.as_str(),
            enforce_version: "latest",
            audit: ps.audit.as_str(),
            audit_version: "latest",
            warn: ps.warn.as_str(),
            warn_version: "latest",
        },
        exemptions: PsaExemptions {
            usernames: ps.exemptions.usernames.clone(),
            runtime_classes: ps.exemptions.runtime_classes.clone(),
            namespaces: ps.exemptions.namespaces.clone(),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionPlugin {
    name: &'static str,
    configuration: PodSecurityConfiguration,
}

// ---- Talos 1.13: the v1alpha1 document ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyPatch {
    machine: LegacyMachine,
    cluster: LegacyCluster,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyMachine {
    features: LegacyFeatures,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyFeatures {
    kube_prism: LegacyKubePrism,
    #[serde(
        rename = "kubernetesTalosAPIAccess",
        skip_serializing_if = "Option::is_none"
    )]
    kubernetes_talos_api_access: Option<LegacyTalosApiAccess>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyTalosApiAccess {
    enabled: bool,
    allowed_roles: Vec<&'static str>,
    allowed_kubernetes_namespaces: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalCloudProvider {
    enabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyKubePrism {
    enabled: bool,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyCluster {
    network: LegacyNetwork,
    proxy: LegacyProxy,
    external_cloud_provider: ExternalCloudProvider,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_server: Option<LegacyApiServer>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyNetwork {
    cni: LegacyCni,
    pod_subnets: Vec<String>,
    service_subnets: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyCni {
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyProxy {
    disabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyApiServer {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra_args: BTreeMap<&'static str, &'static str>,
    admission_control: Vec<AdmissionPlugin>,
}

fn legacy(ctx: &Ctx<'_>) -> Result<Patches, RenderError> {
    let doc = |api_server: Option<LegacyApiServer>| LegacyPatch {
        machine: LegacyMachine {
            features: LegacyFeatures {
                kube_prism: LegacyKubePrism {
                    enabled: true,
                    port: KUBEPRISM_PORT,
                },
                // Control plane only: the Talos CCM runs there.
                kubernetes_talos_api_access: api_server.is_some().then(|| LegacyTalosApiAccess {
                    enabled: true,
                    allowed_roles: TALOS_API_ROLES.to_vec(),
                    allowed_kubernetes_namespaces: TALOS_API_NAMESPACES.to_vec(),
                }),
            },
        },
        cluster: LegacyCluster {
            network: LegacyNetwork {
                // Cilium is the CNI, installed by CAAPH once the API server is up.
                cni: LegacyCni { name: "none" },
                pod_subnets: vec![ctx.plan.network.pods.to_string()],
                service_subnets: vec![ctx.plan.network.services.to_string()],
            },
            // Cilium replaces kube-proxy (kubeProxyReplacement=true).
            proxy: LegacyProxy { disabled: true },
            external_cloud_provider: ExternalCloudProvider { enabled: true },
            api_server,
        },
    };
    let mut extra_args = BTreeMap::new();
    if needs_health_probe_access(ctx) {
        // See the module documentation: the least privilege Talos 1.13 allows.
        extra_args.insert("anonymous-auth", "true");
    }
    let cp = doc(Some(LegacyApiServer {
        extra_args,
        admission_control: vec![AdmissionPlugin {
            name: "PodSecurity",
            configuration: pod_security(&ctx.fleet.spec.pod_security),
        }],
    }));
    Ok(Patches {
        control_plane: vec![yaml::to_yaml(&cp, "Talos control-plane patch")?],
        worker: vec![yaml::to_yaml(&doc(None), "Talos worker patch")?],
    })
}

// ---- Talos ≥ 1.14: one document per concern ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeNetworkConfig {
    api_version: &'static str,
    kind: &'static str,
    pod_subnets: Vec<String>,
    service_subnets: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeProxyConfig {
    api_version: &'static str,
    kind: &'static str,
    enabled: bool,
    /// Required by the schema even when disabled; the image Talos would use anyway.
    image: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubePrismConfig {
    api_version: &'static str,
    kind: &'static str,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeAdmissionControlConfig {
    api_version: &'static str,
    kind: &'static str,
    name: &'static str,
    configuration: PodSecurityConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeAuthenticationConfig {
    api_version: &'static str,
    kind: &'static str,
    configuration: AuthenticationConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationConfiguration {
    api_version: &'static str,
    kind: &'static str,
    anonymous: Anonymous,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Anonymous {
    enabled: bool,
    conditions: Vec<AnonymousCondition>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnonymousCondition {
    path: &'static str,
}

/// `KubeTalosAPIAccessConfig` (Talos ≥ 1.14): the document's presence enables the access.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubeTalosApiAccessConfig {
    api_version: &'static str,
    kind: &'static str,
    allowed_roles: Vec<&'static str>,
    allowed_kubernetes_namespaces: Vec<&'static str>,
}

/// The part of the v1alpha1 document that has no document of its own in Talos ≥ 1.14.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudProviderPatch {
    cluster: CloudProviderCluster,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudProviderCluster {
    external_cloud_provider: ExternalCloudProvider,
}

fn cloud_provider_doc() -> Result<String, RenderError> {
    yaml::to_yaml(
        &CloudProviderPatch {
            cluster: CloudProviderCluster {
                external_cloud_provider: ExternalCloudProvider { enabled: true },
            },
        },
        "Talos external cloud provider patch",
    )
}

/// A strategic-merge directive that removes a whole document from the generated config.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteDocument {
    api_version: &'static str,
    kind: &'static str,
    #[serde(rename = "$patch")]
    patch: &'static str,
}

fn multidoc(ctx: &Ctx<'_>) -> Result<Patches, RenderError> {
    let k8s = &ctx.fleet.spec.versions.kubernetes;
    let network = || KubeNetworkConfig {
        api_version: "v1alpha1",
        kind: "KubeNetworkConfig",
        pod_subnets: vec![ctx.plan.network.pods.to_string()],
        service_subnets: vec![ctx.plan.network.services.to_string()],
    };
    let prism = || KubePrismConfig {
        api_version: "v1alpha1",
        kind: "KubePrismConfig",
        port: KUBEPRISM_PORT,
    };
    let mut cp = vec![
        cloud_provider_doc()?,
        yaml::to_yaml(&network(), "KubeNetworkConfig")?,
        // Talos ≥ 1.14 has no `cni.name: none`: the generated Flannel document must be deleted.
        yaml::to_yaml(
            &DeleteDocument {
                api_version: "v1alpha1",
                kind: "KubeFlannelCNIConfig",
                patch: "delete",
            },
            "KubeFlannelCNIConfig",
        )?,
        yaml::to_yaml(
            &KubeProxyConfig {
                api_version: "v1alpha1",
                kind: "KubeProxyConfig",
                enabled: false,
                image: format!("registry.k8s.io/kube-proxy:{k8s}"),
            },
            "KubeProxyConfig",
        )?,
        yaml::to_yaml(&prism(), "KubePrismConfig")?,
        yaml::to_yaml(
            &KubeAdmissionControlConfig {
                api_version: "v1alpha1",
                kind: "KubeAdmissionControlConfig",
                name: "PodSecurity",
                configuration: pod_security(&ctx.fleet.spec.pod_security),
            },
            "KubeAdmissionControlConfig",
        )?,
        yaml::to_yaml(
            &KubeTalosApiAccessConfig {
                api_version: "v1alpha1",
                kind: "KubeTalosAPIAccessConfig",
                allowed_roles: TALOS_API_ROLES.to_vec(),
                allowed_kubernetes_namespaces: TALOS_API_NAMESPACES.to_vec(),
            },
            "KubeTalosAPIAccessConfig",
        )?,
    ];
    if needs_health_probe_access(ctx) {
        let v = ctx.versions.kubernetes;
        let auth_api = if (v.major, v.minor) >= (1, 34) {
            "apiserver.config.k8s.io/v1"
        } else {
            "apiserver.config.k8s.io/v1beta1"
        };
        cp.push(yaml::to_yaml(
            &KubeAuthenticationConfig {
                api_version: "v1alpha1",
                kind: "KubeAuthenticationConfig",
                configuration: AuthenticationConfiguration {
                    api_version: auth_api,
                    kind: "AuthenticationConfiguration",
                    anonymous: Anonymous {
                        enabled: true,
                        conditions: HEALTH_PATHS
                            .iter()
                            .map(|p| AnonymousCondition { path: p })
                            .collect(),
                    },
                },
            },
            "KubeAuthenticationConfig",
        )?);
    }
    let worker = vec![
        cloud_provider_doc()?,
        yaml::to_yaml(&network(), "KubeNetworkConfig")?,
        yaml::to_yaml(&prism(), "KubePrismConfig")?,
    ];
    Ok(Patches {
        control_plane: cp,
        worker,
    })
}

// ---- The CAPI objects ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TalosConfigSpec {
    generate_type: &'static str,
    talos_version: String,
    strategic_patches: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TalosControlPlaneSpec {
    version: String,
    replicas: u32,
    infrastructure_template: ObjectRef,
    control_plane_config: ControlPlaneConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ControlPlaneConfig {
    controlplane: TalosConfigSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TalosConfigTemplateSpec {
    template: TalosConfigTemplateResource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TalosConfigTemplateResource {
    spec: TalosConfigSpec,
}

/// The cluster's `TalosControlPlane`.
pub fn control_plane(
    ctx: &Ctx<'_>,
    name: &str,
    template_name: &str,
    infra: &dyn Infra,
    patches: &Patches,
) -> impl Serialize + use<> {
    Object {
        api_version: api::CACPPT_V1ALPHA3,
        kind: api::TALOS_CONTROL_PLANE,
        metadata: meta::cluster_meta(ctx, name),
        spec: TalosControlPlaneSpec {
            version: ctx.fleet.spec.versions.kubernetes.clone(),
            replicas: ctx.cluster.control_plane.replicas,
            infrastructure_template: ObjectRef {
                api_version: infra.api_version(),
                kind: infra.template_kind(),
                name: template_name.to_owned(),
                namespace: ctx.namespace().to_owned(),
            },
            control_plane_config: ControlPlaneConfig {
                controlplane: TalosConfigSpec {
                    generate_type: "controlplane",
                    talos_version: ctx.fleet.spec.versions.talos.clone(),
                    strategic_patches: patches.control_plane.clone(),
                },
            },
        },
    }
}

/// A worker pool's `TalosConfigTemplate` and its name (`base-<digest>`: a changed bootstrap
/// config must roll the pool's machines, which only a new template name does).
pub fn config_template(
    ctx: &Ctx<'_>,
    base: &str,
    patches: &Patches,
) -> (impl Serialize + use<>, String) {
    let spec = TalosConfigTemplateSpec {
        template: TalosConfigTemplateResource {
            spec: TalosConfigSpec {
                generate_type: "worker",
                talos_version: ctx.fleet.spec.versions.talos.clone(),
                strategic_patches: patches.worker.clone(),
            },
        },
    };
    let name = meta::content_name(base, &spec);
    let obj = Object {
        api_version: api::CABPT_V1ALPHA3,
        kind: api::TALOS_CONFIG_TEMPLATE,
        metadata: meta::cluster_meta(ctx, name.clone()),
        spec,
    };
    (obj, name)
}
