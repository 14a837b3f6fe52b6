//! The infrastructure providers' credentials Secrets: where they live, what they must hold,
//! and writing one (what `gcp setup --kubeconfig` and `up --sim` do instead of a user pasting a
//! key into `clusterctl init`'s environment).
//!
//! Each provider's default kustomization makes the Secret `manager-bootstrap-credentials`, with
//! the `capg-`/`capa-` name prefix, in the provider's namespace, from
//! `<CLOUD>_B64ENCODED_CREDENTIALS` at `clusterctl init`, and mounts it into the controller
//! (kubernetes-sigs/cluster-api-provider-gcp:`config/default/credentials.yaml`,
//! `config/default/kustomization.yaml`@v1.12.0, key `credentials.json`;
//! kubernetes-sigs/cluster-api-provider-aws:`config/default/credentials.yaml`@v2.11.1, key
//! `credentials`). A controller reads the file when it starts, so a changed Secret only takes
//! effect after a restart of its Deployment.

use meshfleet_kube::{KubeError, ObjectRef};
use meshfleet_spec::Provider;
use serde_json::{Value, json};

use crate::api::Api;

/// One provider's credentials Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialsSecret {
    /// The cloud.
    pub provider: Provider,
    /// The namespace `clusterctl init` installs the provider into.
    pub default_namespace: &'static str,
    /// The Secret's name.
    pub name: &'static str,
    /// The key holding the credentials.
    pub key: &'static str,
    /// The provider's `cluster.x-k8s.io/provider` label.
    pub label: &'static str,
    /// The controller Deployment that reads it.
    pub deployment: &'static str,
}

/// CAPG's.
pub const GCP: CredentialsSecret = CredentialsSecret {
    provider: Provider::Gcp,
    default_namespace: "capg-system",
    name: "capg-manager-bootstrap-credentials",
    key: "credentials.json",
    label: "infrastructure-gcp",
    deployment: "capg-controller-manager",
};

/// CAPA's.
pub const AWS: CredentialsSecret = CredentialsSecret {
    provider: Provider::Aws,
    default_namespace: "capa-system",
    name: "capa-manager-bootstrap-credentials",
    key: "credentials",
    label: "infrastructure-aws",
    deployment: "capa-controller-manager",
};

/// Both.
pub const CREDENTIALS: [CredentialsSecret; 2] = [GCP, AWS];

/// What [`install`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The Secret was absent.
    Created,
    /// It held other credentials.
    Updated,
    /// It already held these.
    Unchanged,
}

/// Make `namespace`'s Secret of `c` hold exactly `value` (server-side apply, meshfleet's
/// field manager), then restart the controller Deployment when there is one, so it reads them.
/// With `dry_run` only reads. The value never leaves this function other than in the apply.
pub async fn install<A: Api>(
    mgmt: &A,
    c: &CredentialsSecret,
    namespace: &str,
    value: &[u8],
    dry_run: bool,
) -> Result<Installed, KubeError> {
    let have = mgmt.secret_value(namespace, c.name, c.key).await?;
    let outcome = match have {
        Some(v) if v == value => return Ok(Installed::Unchanged),
        Some(_) => Installed::Updated,
        None => Installed::Created,
    };
    if dry_run {
        return Ok(outcome);
    }
    use base64::Engine as _;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": c.name, "namespace": namespace,
            "labels": {"cluster.x-k8s.io/provider": c.label}},
        "data": {c.key: base64::engine::general_purpose::STANDARD.encode(value)},
    });
    mgmt.apply(&secret).await?;
    if outcome == Installed::Updated {
        restart(mgmt, c, namespace).await?;
    }
    Ok(outcome)
}

/// What `kubectl rollout restart` does: a new pod-template annotation, so the Deployment
/// replaces its pods and the controller reads the new Secret. Nothing when there is no
/// Deployment (a provider installed otherwise, or the simulator, which runs none).
async fn restart<A: Api>(
    mgmt: &A,
    c: &CredentialsSecret,
    namespace: &str,
) -> Result<(), KubeError> {
    let r = ObjectRef::new("apps/v1", "Deployment", Some(namespace), c.deployment);
    match mgmt.get(&r).await {
        Ok(Some(_)) => {}
        Ok(None) | Err(KubeError::NotServed { .. }) => return Ok(()),
        Err(e) => return Err(e),
    }
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let patch = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": c.deployment, "namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": at}}}},
    });
    mgmt.apply_as(&patch, "meshfleet-credentials").await?;
    Ok(())
}

/// The account a GCP service-account key file belongs to; the error never quotes the content.
pub fn gcp_key_owner(bytes: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|_| "is not a service-account key file (not JSON)".to_string())?;
    if v.get("type").and_then(Value::as_str) != Some("service_account") {
        return Err("is not a service-account key file (`type` is not `service_account`)".into());
    }
    v.get("client_email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "is a key file without `client_email`".into())
}

/// Whether an AWS shared-credentials profile names an access key and its secret, as
/// `clusterawsadm bootstrap credentials encode-as-profile` writes one; the error never quotes
/// the content.
pub fn aws_profile_ok(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "is not a text profile".to_string())?;
    let has = |key: &str| {
        text.lines().any(|l| {
            l.split_once('=')
                .is_some_and(|(k, v)| k.trim() == key && !v.trim().is_empty())
        })
    };
    match (has("aws_access_key_id"), has("aws_secret_access_key")) {
        (true, true) => Ok(()),
        (false, _) => Err("is a profile without `aws_access_key_id`".into()),
        (_, false) => Err("is a profile without `aws_secret_access_key`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_judged_without_echoing_them() {
        let key = br#"{"type":"service_account","client_email":"capg@p.iam.gserviceaccount.com","private_key":"SECRET"}"#;
        assert_eq!(
            gcp_key_owner(key).as_deref(),
            Ok("capg@p.iam.gserviceaccount.com")
        );
        let e = gcp_key_owner(b"not json").unwrap_err();
        assert!(!e.contains("not json"));
        assert!(gcp_key_owner(br#"{"type":"authorized_user"}"#).is_err());
        assert_eq!(
            aws_profile_ok(
                b"[default]\naws_access_key_id = AKIA\naws_secret_access_key = s\nregion = eu-west-1\n"
            ),
            Ok(())
        );
        let e = aws_profile_ok(b"[default]\naws_access_key_id = AKIA\n").unwrap_err();
        assert!(e.contains("aws_secret_access_key") && !e.contains("AKIA"));
    }
}
