//! `meshfleet net setup` as a library call: the secrets beside the fleet, the steps, both
//! clouds' clients, one executor run. The CLI and `up --sim` call this.

use std::path::Path;

use aws_config::{BehaviorVersion, Region};
use meshfleet_plan::Plan;
use meshfleet_spec::Fleet;
use serde_json::Value;

use crate::aws::Ec2;
use crate::desired::{Step, steps, tunnel_names};
use crate::exec::{ApiError, CapaVpc, NetApi, Options};
use crate::gcp::{Clouds, Compute};
use crate::secrets::Secrets;

/// Where the clouds' APIs are.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Compute's base URL (`None`: Google, with Application Default Credentials).
    pub gcp: Option<String>,
    /// EC2's and STS's endpoint (`None`: AWS, with the default credential chain).
    pub aws: Option<String>,
    /// Static AWS credentials for a stand-in that takes any (the simulator); the default chain
    /// otherwise.
    pub aws_static_key: Option<String>,
}

/// The fleet's link steps, with the secrets they need generated once and kept in `dir`
/// (the fleet file's directory). Secrets are written only when new ones were needed, and
/// only when not `dry_run` (a dry run with missing keys plans with fresh, unsaved ones).
pub fn prepare(
    fleet: &Fleet,
    plan: &Plan,
    dir: &Path,
    dry_run: bool,
) -> Result<(Secrets, Vec<Step>), crate::NetError> {
    let mut secrets = Secrets::load(dir)?;
    let before = secrets.clone();
    secrets.ensure(&tunnel_names(fleet, plan)?)?;
    if secrets != before && !dry_run {
        secrets.save(dir)?;
    }
    let s = steps(fleet, plan, &secrets)?;
    Ok((secrets, s))
}

/// A seam half that is not there: the fleet has no cluster on that cloud, so no step calls it.
impl<T: NetApi> NetApi for Option<T> {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        match self {
            Some(a) => a.read(step, body).await,
            None => Err(absent(&step.id)),
        }
    }
    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        match self {
            Some(a) => a.create(step, body).await,
            None => Err(absent(&step.id)),
        }
    }
    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        match self {
            Some(a) => a.update(step, body, current, fields).await,
            None => Err(absent(&step.id)),
        }
    }
    async fn capa_vpc(&self, region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        match self {
            Some(a) => a.capa_vpc(region, cluster).await,
            None => Err(absent(cluster)),
        }
    }
    async fn account_id(&self) -> Result<String, ApiError> {
        match self {
            Some(a) => a.account_id().await,
            None => Err(absent("the account id")),
        }
    }
}

fn absent(what: &str) -> ApiError {
    ApiError::Refused(format!(
        "{what}: the fleet has no cluster on this cloud, so no client was made for it"
    ))
}

/// Both clouds' clients, each only when a step needs it.
pub async fn clients(
    fleet: &Fleet,
    steps: &[Step],
    ep: &Endpoints,
) -> Result<Clouds<Option<Compute>, Option<Ec2>>, ApiError> {
    use crate::desired::Cloud;
    let gcp = match (
        steps.iter().any(|s| s.cloud == Cloud::Gcp),
        &fleet.spec.providers.gcp,
    ) {
        (true, Some(g)) => Some(Compute::new(&g.project, ep.gcp.as_deref()).await?),
        _ => None,
    };
    let aws = if steps.iter().any(|s| s.cloud == Cloud::Aws) {
        let region = steps
            .iter()
            .find(|s| s.cloud == Cloud::Aws)
            .map(|s| s.region.clone())
            .unwrap_or_else(|| "us-east-1".into());
        // rustls with ring, as `meshfleet-aws`: the workspace's TLS stack.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(region));
        if let Some(u) = &ep.aws {
            loader = loader.endpoint_url(u);
        }
        if let Some(k) = &ep.aws_static_key {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                k,
                k,
                None,
                None,
                "meshfleet-static",
            ));
        }
        Some(Ec2::new(loader.load().await))
    } else {
        None
    };
    Ok(Clouds { gcp, aws })
}

/// Prepare and run: the report, or where it stopped.
pub async fn run(
    fleet: &Fleet,
    plan: &Plan,
    dir: &Path,
    ep: &Endpoints,
    opts: &Options,
) -> Result<crate::exec::Report, SetupError> {
    let (secrets, s) = prepare(fleet, plan, dir, opts.dry_run)?;
    if s.is_empty() {
        return Ok(crate::exec::Report::default());
    }
    let api = clients(fleet, &s, ep).await.map_err(SetupError::Client)?;
    crate::exec::run(&api, &s, &secrets, opts)
        .await
        .map_err(SetupError::Failed)
}

impl crate::exec::Failure {
    /// The run stopped only because CAPA has not made a VPC a step needs yet: re-running
    /// later carries on.
    pub fn waits_for_capa(&self) -> bool {
        self.why.starts_with("cannot run yet") && self.why.contains("after CAPA creates")
    }
}

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The secrets file or the steps.
    #[error(transparent)]
    Net(#[from] crate::NetError),
    /// A client could not be made.
    #[error("{0}")]
    Client(ApiError),
    /// A step failed; the report so far is inside.
    #[error(transparent)]
    Failed(crate::exec::Failure),
}
