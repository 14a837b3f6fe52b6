//! `meshfleet doctor`'s checks of a management cluster: is it reachable, does it run every
//! Cluster API provider the fleet needs at a version meshfleet's objects work with, and do the
//! infrastructure providers have their credentials Secrets. Each check is one line of data with
//! the fix; the CLI adds the fleet, cloud and tool checks and prints them.
//!
//! Provider versions come from clusterctl's inventory: `clusterctl init` records every provider
//! it installs as a `Provider` object (`clusterctl.cluster.x-k8s.io/v1alpha3`, fields
//! `providerName`, `type`, `version`) in the provider's namespace
//! (kubernetes-sigs/cluster-api:`cmd/clusterctl/api/v1alpha3/provider_type.go`@v1.14.0). A
//! provider installed some other way has no entry; doctor then falls back to the kinds the
//! server serves and says the version is unknown.

use meshfleet_kube::KubeError;
use meshfleet_render::{ProviderRequirement, ProviderType, Rendered, required_providers};
use meshfleet_spec::{Fleet, Provider, Version};
use serde::Serialize;
use serde_json::Value;

use crate::api::Api;
use crate::credentials::{self, CREDENTIALS, CredentialsSecret};
use crate::providers;

/// clusterctl's inventory kind.
pub const INVENTORY_API_VERSION: &str = "clusterctl.cluster.x-k8s.io/v1alpha3";
/// clusterctl's inventory kind.
pub const INVENTORY_KIND: &str = "Provider";

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In place.
    Ok,
    /// Absent.
    Missing,
    /// Present but not usable as it is (too old, unreachable, wrong content).
    Wrong,
}

impl Status {
    /// The word doctor prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Wrong => "wrong",
        }
    }
}

/// One line of doctor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What is checked, e.g. `provider infrastructure-gcp`.
    pub check: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (absent when ok).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Whether a `missing`/`wrong` verdict makes doctor fail (optional tools do not).
    pub required: bool,
}

impl Check {
    /// A required check.
    pub fn new(check: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status,
            detail: detail.into(),
            fix: None,
            required: true,
        }
    }

    /// With the fix.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Whether this check fails doctor.
    pub fn fails(&self) -> bool {
        self.required && self.status != Status::Ok
    }
}

/// What doctor expects of the providers' credentials.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The email of CAPG's service account (`gcp setup` creates it), when the fleet uses GCP.
    pub gcp_service_account: Option<String>,
    /// Where `gcp setup` keeps that account's key, for the fix.
    pub gcp_key_file: Option<String>,
}

fn inventory_type(t: ProviderType) -> &'static str {
    // The `type` values of clusterctl's inventory (`ProviderType` in provider_type.go@v1.14.0).
    match t {
        ProviderType::Core => "CoreProvider",
        ProviderType::Bootstrap => "BootstrapProvider",
        ProviderType::ControlPlane => "ControlPlaneProvider",
        ProviderType::Infrastructure => "InfrastructureProvider",
        ProviderType::Addon => "AddonProvider",
    }
}

/// clusterctl's label for a provider (`ManifestLabel` in labels.go@v1.14.0), which doctor uses
/// as the check's name.
fn manifest_label(r: &ProviderRequirement) -> String {
    match r.type_ {
        ProviderType::Core => r.name.to_string(),
        ProviderType::Bootstrap => format!("bootstrap-{}", r.name),
        ProviderType::ControlPlane => format!("control-plane-{}", r.name),
        ProviderType::Infrastructure => format!("infrastructure-{}", r.name),
        ProviderType::Addon => format!("addon-{}", r.name),
    }
}

/// One inventory entry, as far as doctor reads it.
#[derive(Debug, Clone)]
struct Installed {
    namespace: String,
    name: String,
    type_: String,
    version: String,
}

fn installed(items: &[Value]) -> Vec<Installed> {
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    items
        .iter()
        .map(|v| Installed {
            namespace: s(v, "/metadata/namespace"),
            name: s(v, "/providerName"),
            type_: s(v, "/type"),
            version: s(v, "/version"),
        })
        .collect()
}

/// Check the management cluster behind `mgmt` for `fleet`: reachability, every provider
/// `required_providers` names (installed, new enough, serving its kinds), and the credentials
/// Secrets of the infrastructure providers the fleet uses.
pub async fn management<A: Api>(
    mgmt: &A,
    fleet: &Fleet,
    rendered: &Rendered,
    expect: &Expect,
) -> Vec<Check> {
    let mut out = Vec::new();
    // Discovery of a core kind is the cheapest call that proves the server answers and accepts
    // the credentials.
    if let Err(e) = mgmt
        .missing_kinds(&[("v1".to_owned(), "Namespace".to_owned())])
        .await
    {
        out.push(
            Check::new(
                "management cluster",
                Status::Wrong,
                format!("cannot reach {}: {e}", mgmt.server()),
            )
            .fix("check the kubeconfig's server and credentials, e.g. `kubectl --kubeconfig K get namespaces`"),
        );
        return out;
    }
    out.push(Check::new(
        "management cluster",
        Status::Ok,
        format!("{} answers", mgmt.server()),
    ));

    let required = required_providers(fleet);
    let kinds = providers::kinds(rendered);
    let missing_kinds = match mgmt.missing_kinds(&kinds).await {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::new(
                "provider kinds",
                Status::Wrong,
                format!("discovery failed: {e}"),
            ));
            return out;
        }
    };
    let inventory = match mgmt
        .list(INVENTORY_API_VERSION, INVENTORY_KIND, None, "")
        .await
    {
        Ok(items) => Some(installed(&items)),
        Err(KubeError::NotServed { .. }) => None,
        Err(e) => {
            out.push(Check::new(
                "provider inventory",
                Status::Wrong,
                format!("cannot list clusterctl's inventory: {e}"),
            ));
            None
        }
    };
    for r in &required {
        out.push(provider_check(
            r,
            inventory.as_deref(),
            &missing_kinds,
            &required,
        ));
    }

    for c in &CREDENTIALS {
        if !fleet
            .spec
            .clusters
            .iter()
            .any(|cl| cl.provider == c.provider)
        {
            continue;
        }
        let infra = match c.provider {
            Provider::Gcp => "gcp",
            Provider::Aws => "aws",
        };
        let ns = inventory
            .as_deref()
            .and_then(|inv| {
                inv.iter()
                    .find(|i| i.name == infra && i.type_ == "InfrastructureProvider")
            })
            .map(|i| i.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| c.default_namespace.to_owned());
        out.push(credentials_check(mgmt, c, &ns, expect).await);
    }
    out
}

fn provider_check(
    r: &ProviderRequirement,
    inventory: Option<&[Installed]>,
    missing_kinds: &[(String, String)],
    required: &[ProviderRequirement],
) -> Check {
    let label = manifest_label(r);
    let name = format!("provider {label}");
    let unserved: Vec<(String, String)> = missing_kinds
        .iter()
        .filter(|(av, k)| r.kinds.iter().any(|(a, kk)| a == av && kk == k))
        .cloned()
        .collect();
    let init = format!(
        "clusterctl init {} {}",
        r.type_.clusterctl_flag(),
        r.clusterctl_spec()
    );
    let entry = inventory.and_then(|inv| {
        inv.iter()
            .find(|i| i.name == r.name && i.type_ == inventory_type(r.type_))
    });
    match (entry, inventory) {
        (None, Some(_)) => Check::new(
            name,
            Status::Missing,
            format!("not installed; needed {}", r.why),
        )
        .fix(init),
        (None, None) if !unserved.is_empty() => Check::new(
            name,
            Status::Missing,
            format!(
                "the server does not serve {}; needed {}",
                kinds_list(&unserved),
                r.why
            ),
        )
        .fix(providers::install_hint(&unserved, required)),
        (None, None) => Check::new(
            name,
            Status::Ok,
            "serves its kinds; the version is unknown (not installed by clusterctl, so no inventory entry)",
        ),
        (Some(i), _) => {
            let at = format!("{}/{} {}", i.namespace, i.name, i.version);
            match Version::parse(&i.version) {
                None => Check::new(
                    name,
                    Status::Wrong,
                    format!("{at}: `{}` is not a version", i.version),
                )
                .fix(format!(
                    "reinstall it with `clusterctl delete {} {}` then `{init}`",
                    r.type_.clusterctl_flag(),
                    r.name
                )),
                Some(v) if v < r.min_version => Check::new(
                    name,
                    Status::Wrong,
                    format!(
                        "{at} is older than v{}, needed {}",
                        r.min_version, r.why
                    ),
                )
                .fix(format!(
                    "clusterctl upgrade apply {} {}/{}",
                    r.type_.clusterctl_flag(),
                    i.namespace,
                    r.clusterctl_spec()
                )),
                Some(_) if !unserved.is_empty() => Check::new(
                    name,
                    Status::Wrong,
                    format!(
                        "{at} is installed but the server does not serve {}",
                        kinds_list(&unserved)
                    ),
                )
                .fix(format!(
                    "its CustomResourceDefinitions are missing; reinstall it: `clusterctl delete {} {}` then `{init}`",
                    r.type_.clusterctl_flag(),
                    r.name
                )),
                Some(_) => Check::new(name, Status::Ok, at),
            }
        }
    }
}

fn kinds_list(kinds: &[(String, String)]) -> String {
    kinds
        .iter()
        .map(|(av, k)| format!("{k} ({av})"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn credentials_check<A: Api>(
    mgmt: &A,
    c: &CredentialsSecret,
    ns: &str,
    expect: &Expect,
) -> Check {
    let name = format!("credentials {ns}/{}", c.name);
    let fix = match c.provider {
        Provider::Gcp => {
            let key = expect
                .gcp_key_file
                .as_deref()
                .unwrap_or("<the key `meshfleet gcp setup` wrote>");
            // Before `clusterctl init` the same key goes in as GCP_B64ENCODED_CREDENTIALS; on
            // an installed CAPG the Secret is replaced and the controller restarted to read it.
            format!(
                "kubectl -n {ns} create secret generic {} --from-file={}={key} --dry-run=client -o yaml | kubectl apply -f - && kubectl -n {ns} rollout restart deployment capg-controller-manager (or `meshfleet gcp setup --kubeconfig K`, which does both)",
                c.name, c.key
            )
        }
        // `controller update-credentials` rewrites the Secret of an installed CAPA
        // (kubernetes-sigs/cluster-api-provider-aws:
        // `cmd/clusterawsadm/cmd/controller/credentials/update_credentials.go`@v2.11.1).
        Provider::Aws => format!(
            "export AWS_B64ENCODED_CREDENTIALS=\"$(clusterawsadm bootstrap credentials encode-as-profile)\" before `clusterctl init --infrastructure aws`; on an installed CAPA: `clusterawsadm controller update-credentials --namespace {ns}` (keep the encoded value out of logs)"
        ),
    };
    let value = match mgmt.secret_value(ns, c.name, c.key).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Check::new(
                name,
                Status::Missing,
                format!("no Secret with key `{}`", c.key),
            )
            .fix(fix);
        }
        Err(e) => {
            return Check::new(name, Status::Wrong, format!("cannot read it: {e}")).fix(fix);
        }
    };
    // Never echo the value: only what it is, and whose.
    match c.provider {
        Provider::Gcp => match credentials::gcp_key_owner(&value) {
            Err(why) => Check::new(name, Status::Wrong, why).fix(fix),
            Ok(email) => match &expect.gcp_service_account {
                Some(want) if *want != email => Check::new(
                    name,
                    Status::Wrong,
                    format!(
                        "holds a key of `{email}`, not of the fleet's CAPG account `{want}` (which `gcp setup` grants the roles)"
                    ),
                )
                .fix(fix),
                _ => Check::new(name, Status::Ok, format!("a key of `{email}`")),
            },
        },
        Provider::Aws => match credentials::aws_profile_ok(&value) {
            Ok(()) => Check::new(name, Status::Ok, "an AWS credentials profile"),
            Err(why) => Check::new(name, Status::Wrong, why).fix(fix),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_types_and_labels_follow_clusterctl() {
        let r = ProviderRequirement {
            name: "talos",
            type_: ProviderType::ControlPlane,
            min_version: Version::parse("v0.5.12").unwrap(),
            kinds: vec![],
            why: String::new(),
        };
        assert_eq!(manifest_label(&r), "control-plane-talos");
        assert_eq!(inventory_type(r.type_), "ControlPlaneProvider");
        let old = [Installed {
            namespace: "cacppt-system".into(),
            name: "talos".into(),
            type_: "ControlPlaneProvider".into(),
            version: "v0.5.8".into(),
        }];
        let c = provider_check(&r, Some(&old), &[], std::slice::from_ref(&r));
        assert_eq!(c.status, Status::Wrong);
        assert_eq!(
            c.fix.as_deref(),
            Some("clusterctl upgrade apply --control-plane cacppt-system/talos:v0.5.12")
        );
        let c = provider_check(&r, Some(&[]), &[], std::slice::from_ref(&r));
        assert_eq!(c.status, Status::Missing);
        assert_eq!(
            c.fix.as_deref(),
            Some("clusterctl init --control-plane talos:v0.5.12")
        );
    }
}
