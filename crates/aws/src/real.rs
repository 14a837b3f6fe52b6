//! [`AwsApi`] through the official AWS SDK for Rust: `aws-config`'s default credential chain
//! (environment, shared profile, SSO, credential process, web identity, IMDS), STS, EC2 and
//! CloudFormation. With an endpoint override every service and region goes to that URL (moto in
//! server mode, or the simulator), which tell regions apart by the SigV4 credential scope.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudformation::types::{Capability, Tag};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::api::{AwsApi, CallerIdentity, Image, RegionInfo, StackInfo, StackRequest};
use crate::error::{ApiError, Failed, SetupError};

/// Credentials sent to an emulator when the environment has none: moto and the simulator
/// accept any, and the SDK refuses to sign without some.
const EMULATOR_KEY: &str = "meshfleet-emulator";

/// The SDK-backed client.
#[derive(Debug, Clone)]
pub struct SdkApi {
    config: SdkConfig,
    /// Where account-wide reads go ([`crate::desired::probe_region`]).
    probe: String,
}

impl SdkApi {
    /// Load the default chain for `home` (the region of the IAM stack), or point every client
    /// at `endpoint`.
    pub async fn new(endpoint: Option<&str>, home: String) -> Result<Self, SetupError> {
        // Emulators accept any credentials; with an endpoint and none in the environment the
        // SDK still needs some to sign.
        let emulator = endpoint.is_some()
            && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none();
        let creds = emulator.then(|| {
            Credentials::new(EMULATOR_KEY, EMULATOR_KEY, None, None, "meshfleet-emulator")
        });
        Ok(Self::build(endpoint, home, creds).await)
    }

    /// The same with explicit static credentials instead of the default chain (an emulator's
    /// users, e.g. moto's IAM users in tests of missing permissions).
    pub async fn with_credentials(
        endpoint: Option<&str>,
        home: String,
        access_key: &str,
        secret_key: &str,
    ) -> Self {
        let creds = Credentials::new(access_key, secret_key, None, None, "meshfleet-static");
        Self::build(endpoint, home, Some(creds)).await
    }

    async fn build(endpoint: Option<&str>, home: String, creds: Option<Credentials>) -> Self {
        // rustls with ring: the workspace's TLS stack, instead of the SDK default (aws-lc-rs).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let probe = crate::desired::probe_region(&home);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(home));
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some(c) = creds {
            loader = loader.credentials_provider(c);
        }
        Self {
            config: loader.load().await,
            probe,
        }
    }

    fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    fn cfn(&self, region: &str) -> aws_sdk_cloudformation::Client {
        let conf = aws_sdk_cloudformation::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()))
            .build();
        aws_sdk_cloudformation::Client::from_conf(conf)
    }
}

/// Normalise an SDK error (every service crate shares `SdkError` and `ProvideErrorMetadata`).
fn convert<E>(
    action: &'static str,
    region: &str,
    e: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let full = chain_text(&e);
    let out = match &e {
        SdkError::ServiceError(ctx) => {
            let (mut code, mut message) = (
                ctx.err().code().unwrap_or_default().to_owned(),
                ctx.err().message().unwrap_or_default().to_owned(),
            );
            if code.is_empty() {
                // moto 5.2.5 answers IAM denials as `<ErrorResponse><Errors><Error>`, which is
                // neither the awsQuery nor the ec2Query error shape, so the SDK finds no code:
                // read the body's first `<Code>` and `<Message>` instead.
                let body = ctx
                    .raw()
                    .body()
                    .bytes()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                code = xml_text(&body, "Code").unwrap_or_default();
                if message.is_empty() {
                    message = xml_text(&body, "Message").unwrap_or_default();
                }
            }
            ApiError::service(action, ctx.raw().status().as_u16(), &code, message)
        }
        SdkError::ResponseError(ctx) => ApiError::service(
            action,
            ctx.raw().status().as_u16(),
            "",
            format!("unreadable response: {full}"),
        ),
        SdkError::TimeoutError(_) => ApiError::other(action, Failed::Timeout, full),
        _ if has_credentials_error(&e) => ApiError::other(action, Failed::Credentials, full),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            ApiError::other(action, Failed::Timeout, full)
        }
        SdkError::DispatchFailure(_) => ApiError::other(action, Failed::Transport, full),
        _ => ApiError::other(action, Failed::Client, full),
    };
    out.in_region(region)
}

/// The text of the first `<tag>…</tag>` of an XML body (entities decoded).
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(
        body[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The error and its causes as one readable line: each cause's own message once, without the
/// SDK's `Debug` dump ([`DisplayErrorContext`] appends one), and the credential chain's
/// per-provider attempts when credentials failed.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        // Only the context type knows more.
        return DisplayErrorContext(e).to_string();
    }
    parts.join(": ")
}

/// Whether the failure was loading credentials (the SDK reports it as a dispatch or
/// construction failure whose source chain holds a `CredentialsError`).
fn has_credentials_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(s) = cur {
        if s.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        cur = s.source();
    }
    false
}

impl AwsApi for SdkApi {
    async fn caller_identity(&self) -> Result<CallerIdentity, ApiError> {
        let region = self.probe.as_str();
        let conf = aws_sdk_sts::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()))
            .build();
        let out = aws_sdk_sts::Client::from_conf(conf)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| convert("sts:GetCallerIdentity", region, e))?;
        Ok(CallerIdentity {
            account: out.account().unwrap_or_default().to_owned(),
            arn: out.arn().unwrap_or_default().to_owned(),
        })
    }

    async fn describe_regions(&self) -> Result<Vec<RegionInfo>, ApiError> {
        let region = self.probe.clone();
        let out = self
            .ec2(&region)
            .describe_regions()
            .all_regions(true)
            .send()
            .await
            .map_err(|e| convert("ec2:DescribeRegions", &region, e))?;
        Ok(out
            .regions()
            .iter()
            .map(|r| RegionInfo {
                name: r.region_name().unwrap_or_default().to_owned(),
                opt_in_status: r.opt_in_status().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn describe_stack(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<StackInfo>, ApiError> {
        const ACTION: &str = "cloudformation:DescribeStacks";
        let out = match self
            .cfn(region)
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let e = convert(ACTION, region, e);
                // DescribeStacks by name answers ValidationError "Stack with id X does not
                // exist" for a stack that never existed or was deleted.
                if e.is_stack_missing() {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        Ok(out
            .stacks()
            .first()
            .map(|s| StackInfo {
                status: s
                    .stack_status()
                    .map(|st| st.as_str().to_owned())
                    .unwrap_or_default(),
                reason: s.stack_status_reason().unwrap_or_default().to_owned(),
            })
            .filter(|s| s.status != "DELETE_COMPLETE"))
    }

    async fn get_template(&self, region: &str, name: &str) -> Result<String, ApiError> {
        let out = self
            .cfn(region)
            .get_template()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| convert("cloudformation:GetTemplate", region, e))?;
        Ok(out.template_body().unwrap_or_default().to_owned())
    }

    async fn create_stack(&self, region: &str, req: &StackRequest) -> Result<(), ApiError> {
        let mut call = self
            .cfn(region)
            .create_stack()
            .stack_name(&req.stack_name)
            .template_body(&req.template_body);
        for c in &req.capabilities {
            call = call.capabilities(Capability::from(*c));
        }
        for t in &req.tags {
            call = call.tags(Tag::builder().key(t.key).value(t.value).build());
        }
        call.send()
            .await
            .map_err(|e| convert("cloudformation:CreateStack", region, e))?;
        Ok(())
    }

    async fn update_stack(&self, region: &str, req: &StackRequest) -> Result<(), ApiError> {
        let mut call = self
            .cfn(region)
            .update_stack()
            .stack_name(&req.stack_name)
            .template_body(&req.template_body);
        for c in &req.capabilities {
            call = call.capabilities(Capability::from(*c));
        }
        for t in &req.tags {
            call = call.tags(Tag::builder().key(t.key).value(t.value).build());
        }
        call.send()
            .await
            .map_err(|e| convert("cloudformation:UpdateStack", region, e))?;
        Ok(())
    }

    async fn delete_stack(&self, region: &str, name: &str) -> Result<(), ApiError> {
        self.cfn(region)
            .delete_stack()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| convert("cloudformation:DeleteStack", region, e))?;
        Ok(())
    }

    async fn stack_failures(&self, region: &str, name: &str) -> Result<Vec<String>, ApiError> {
        let out = self
            .cfn(region)
            .describe_stack_events()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| convert("cloudformation:DescribeStackEvents", region, e))?;
        Ok(out
            .stack_events()
            .iter()
            .filter(|ev| {
                ev.resource_status()
                    .is_some_and(|s| s.as_str().ends_with("_FAILED"))
            })
            .filter_map(|ev| {
                let reason = ev.resource_status_reason()?;
                Some(format!(
                    "{}: {reason}",
                    ev.logical_resource_id().unwrap_or_default()
                ))
            })
            .collect())
    }

    async fn find_images(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Vec<Image>, ApiError> {
        let out = self
            .ec2(region)
            .describe_images()
            .owners(owner)
            .filters(Filter::builder().name("name").values(name).build())
            .send()
            .await
            .map_err(|e| convert("ec2:DescribeImages", region, e))?;
        Ok(out
            .images()
            .iter()
            .map(|i| Image {
                id: i.image_id().unwrap_or_default().to_owned(),
                name: i.name().unwrap_or_default().to_owned(),
                architecture: i
                    .architecture()
                    .map(|a| a.as_str().to_owned())
                    .unwrap_or_default(),
                state: i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                owner: i.owner_id().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn key_pair_exists(&self, region: &str, name: &str) -> Result<bool, ApiError> {
        match self
            .ec2(region)
            .describe_key_pairs()
            .key_names(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.key_pairs().iter().any(|k| k.key_name() == Some(name))),
            Err(e) => {
                let e = convert("ec2:DescribeKeyPairs", region, e);
                if e.code == "InvalidKeyPair.NotFound" {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}
