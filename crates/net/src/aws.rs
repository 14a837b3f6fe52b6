//! The AWS half of [`NetApi`] through the official SDK (`aws-sdk-ec2`). Resources are found by
//! their `Name` tag (the steps tag everything they make), compared on the fields EC2 reports
//! back, under the steps' own query-parameter keys.
//!
//! Every AWS action [`crate::desired::steps`] emits is served: Transit Gateways, customer
//! gateways and VPN connections here; VPC and peering attachments, acceptances, Transit
//! Gateway routes, VPC peering and VPC routes in its `links` module; CAPA's VPCs and the account id
//! (STS). Updates where EC2 changes a field in place (a route's target, a VPN tunnel's key or
//! inside range, a VPN's gateways, a Transit Gateway's options, an attachment's subnets);
//! a refusal naming the fields and the fix otherwise. GCP steps are not served here.

mod links;

use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    DefaultRouteTableAssociationValue, DefaultRouteTablePropagationValue, DnsSupportValue, Filter,
    GatewayType, IkeVersionsRequestListValue, Phase1DhGroupNumbersRequestListValue,
    Phase1EncryptionAlgorithmsRequestListValue, Phase1IntegrityAlgorithmsRequestListValue,
    Phase2DhGroupNumbersRequestListValue, Phase2EncryptionAlgorithmsRequestListValue,
    Phase2IntegrityAlgorithmsRequestListValue, ResourceType, Tag, TagSpecification,
    TransitGatewayRequestOptions, VpnConnectionOptionsSpecification, VpnEcmpSupportValue,
    VpnTunnelOptionsSpecification,
};
use serde_json::{Value, json};

use crate::desired::{Cloud, Step};
use crate::exec::{ApiError, CapaVpc, NetApi};

/// The tag CAPA puts on what it owns for a cluster
/// (cluster-api-provider-aws v1beta2 `tags.go` `ClusterTagKey`).
fn capa_tag(cluster: &str) -> String {
    format!("sigs.k8s.io/cluster-api-provider-aws/cluster/{cluster}")
}

/// EC2 through the SDK, one client per region from one loaded configuration.
#[derive(Debug, Clone)]
pub struct Ec2 {
    config: SdkConfig,
    /// How long a resource still changing (`pending`, …) is waited for.
    settle: Duration,
    /// How often it is polled meanwhile.
    poll: Duration,
}

fn convert<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> ApiError {
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            s.raw().status().as_u16() >= 500
                || matches!(
                    s.err().code(),
                    Some("Throttling" | "RequestLimitExceeded" | "ServiceUnavailable")
                )
        }
        _ => false,
    };
    let msg = format!("{what}: {}", DisplayErrorContext(&e));
    if transient {
        ApiError::Transient(msg)
    } else {
        ApiError::Refused(msg)
    }
}

/// A string field of a step body (numbers in their decimal form).
fn field(b: &Value, k: &str) -> Option<String> {
    match b.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn need(b: &Value, k: &str) -> Result<String, ApiError> {
    field(b, k).ok_or_else(|| ApiError::Refused(format!("the request has no `{k}`")))
}

/// The `Name` tag a step gives its resource.
fn name_of(b: &Value) -> Option<String> {
    field(b, "TagSpecification.1.Tag.1.Value")
}

fn tag_spec(b: &Value) -> Option<TagSpecification> {
    let rt = field(b, "TagSpecification.1.ResourceType")?;
    let mut t = TagSpecification::builder().resource_type(ResourceType::from(rt.as_str()));
    for i in 1.. {
        let (Some(k), Some(v)) = (
            field(b, &format!("TagSpecification.1.Tag.{i}.Key")),
            field(b, &format!("TagSpecification.1.Tag.{i}.Value")),
        ) else {
            break;
        };
        t = t.tags(Tag::builder().key(k).value(v).build());
    }
    Some(t.build())
}

fn named(tags: &[Tag], name: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some("Name") && t.value() == Some(name))
}

/// Gone or going: not what a step made.
fn gone(state: Option<&str>) -> bool {
    matches!(state, Some("deleted" | "deleting" | "failed"))
}

impl Ec2 {
    /// Use a loaded SDK configuration (credentials, endpoint override); the region is set per
    /// call.
    pub fn new(config: SdkConfig) -> Self {
        Self {
            config,
            // A Transit Gateway or an attachment typically turns `available` within minutes.
            settle: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(5),
        }
    }

    /// Wait at most `timeout` (polling every `poll`) for a resource found `pending`,
    /// `modifying`, … to settle before reporting it; past it the read fails as transient.
    pub fn with_settle(mut self, timeout: Duration, poll: Duration) -> Self {
        self.settle = timeout;
        self.poll = poll;
        self
    }

    fn client(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    async fn read_tgw(&self, region: &str, name: &str) -> Result<Option<Value>, ApiError> {
        // Filtered here as well as by EC2: emulators may ignore tag filters.
        let out = self
            .client(region)
            .describe_transit_gateways()
            .filters(Filter::builder().name("tag:Name").values(name).build())
            .send()
            .await
            .map_err(|e| convert("DescribeTransitGateways", e))?;
        Ok(out
            .transit_gateways()
            .iter()
            .filter(|t| named(t.tags(), name))
            .find(|t| !gone(t.state().map(|s| s.as_str())))
            .map(|t| {
                let o = t.options();
                let s = |x: Option<&str>| x.map(str::to_owned);
                json!({
                    "transitGatewayId": t.transit_gateway_id(),
                    "associationDefaultRouteTableId": o.and_then(|o| o.association_default_route_table_id()),
                    "Options.AmazonSideAsn": o.and_then(|o| o.amazon_side_asn()),
                    "Options.DefaultRouteTableAssociation": s(o.and_then(|o| o.default_route_table_association()).map(|v| v.as_str())),
                    "Options.DefaultRouteTablePropagation": s(o.and_then(|o| o.default_route_table_propagation()).map(|v| v.as_str())),
                    "Options.VpnEcmpSupport": s(o.and_then(|o| o.vpn_ecmp_support()).map(|v| v.as_str())),
                    "state": s(t.state().map(|v| v.as_str())),
                })
            })
            .map(drop_nulls))
    }

    async fn create_tgw(&self, region: &str, b: &Value) -> Result<Value, ApiError> {
        let asn: i64 = need(b, "Options.AmazonSideAsn")?
            .parse()
            .map_err(|_| ApiError::Refused("Options.AmazonSideAsn is not a number".into()))?;
        let opt = |k: &str| field(b, k).unwrap_or_else(|| "enable".into());
        let options = TransitGatewayRequestOptions::builder()
            .amazon_side_asn(asn)
            .default_route_table_association(DefaultRouteTableAssociationValue::from(
                opt("Options.DefaultRouteTableAssociation").as_str(),
            ))
            .default_route_table_propagation(DefaultRouteTablePropagationValue::from(
                opt("Options.DefaultRouteTablePropagation").as_str(),
            ))
            .vpn_ecmp_support(VpnEcmpSupportValue::from(
                opt("Options.VpnEcmpSupport").as_str(),
            ))
            .dns_support(DnsSupportValue::from(opt("Options.DnsSupport").as_str()))
            .build();
        self.client(region)
            .create_transit_gateway()
            .set_description(field(b, "Description"))
            .options(options)
            .set_tag_specifications(tag_spec(b).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| convert("CreateTransitGateway", e))?;
        let name = name_of(b).unwrap_or_default();
        self.settled(&format!("transit gateway `{name}`"), || {
            self.read_tgw(region, &name)
        })
        .await?
        .ok_or_else(|| ApiError::Transient(format!("transit gateway `{name}` not visible yet")))
    }

    async fn read_cgw(&self, region: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let out = self
            .client(region)
            .describe_customer_gateways()
            .filters(Filter::builder().name("tag:Name").values(name).build())
            .send()
            .await
            .map_err(|e| convert("DescribeCustomerGateways", e))?;
        Ok(out
            .customer_gateways()
            .iter()
            .filter(|c| named(c.tags(), name))
            .find(|c| !gone(c.state()))
            .map(|c| {
                drop_nulls(json!({
                    "customerGatewayId": c.customer_gateway_id(),
                    "Type": c.r#type(),
                    "BgpAsn": c.bgp_asn(),
                    "IpAddress": c.ip_address(),
                    "state": c.state(),
                }))
            }))
    }

    async fn create_cgw(&self, region: &str, b: &Value) -> Result<Value, ApiError> {
        let asn: i32 = need(b, "BgpAsn")?
            .parse()
            .map_err(|_| ApiError::Refused("BgpAsn is not a number".into()))?;
        self.client(region)
            .create_customer_gateway()
            .r#type(GatewayType::from(need(b, "Type")?.as_str()))
            .bgp_asn(asn)
            .ip_address(need(b, "IpAddress")?)
            .set_tag_specifications(tag_spec(b).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| convert("CreateCustomerGateway", e))?;
        let name = name_of(b).unwrap_or_default();
        self.read_cgw(region, &name).await?.ok_or_else(|| {
            ApiError::Transient(format!("customer gateway `{name}` not visible yet"))
        })
    }

    async fn read_vpn(&self, region: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let out = self
            .client(region)
            .describe_vpn_connections()
            .filters(Filter::builder().name("tag:Name").values(name).build())
            .send()
            .await
            .map_err(|e| convert("DescribeVpnConnections", e))?;
        Ok(out
            .vpn_connections()
            .iter()
            .filter(|v| named(v.tags(), name))
            .find(|v| !gone(v.state().map(|s| s.as_str())))
            .map(|v| {
                let tunnels = v.options().map(|o| o.tunnel_options()).unwrap_or_default();
                let mut j = json!({
                    "vpnConnectionId": v.vpn_connection_id(),
                    "Type": v.r#type().map(|t| t.as_str()),
                    "CustomerGatewayId": v.customer_gateway_id(),
                    "TransitGatewayId": v.transit_gateway_id(),
                    "Options.StaticRoutesOnly": v.options().and_then(|o| o.static_routes_only()),
                    "state": v.state().map(|s| s.as_str()),
                    "tunnels": tunnels.iter().map(|t| json!({"outsideIpAddress": t.outside_ip_address()})).collect::<Vec<_>>(),
                });
                for (k, t) in tunnels.iter().enumerate() {
                    let p = format!("Options.TunnelOptions.{}", k + 1);
                    j[format!("{p}.TunnelInsideCidr")] = json!(t.tunnel_inside_cidr());
                    j[format!("{p}.PreSharedKey")] = json!(t.pre_shared_key());
                }
                drop_nulls(j)
            }))
    }

    async fn create_vpn(&self, region: &str, b: &Value) -> Result<Value, ApiError> {
        let mut options = VpnConnectionOptionsSpecification::builder()
            .static_routes_only(field(b, "Options.StaticRoutesOnly").as_deref() == Some("true"));
        for k in 1..=2 {
            let p = format!("Options.TunnelOptions.{k}");
            let f = |x: &str| field(b, &format!("{p}.{x}"));
            let mut t = VpnTunnelOptionsSpecification::builder()
                .set_tunnel_inside_cidr(f("TunnelInsideCidr"))
                .set_pre_shared_key(f("PreSharedKey"));
            if let Some(v) = f("IKEVersion.1.Value") {
                t = t.ike_versions(IkeVersionsRequestListValue::builder().value(v).build());
            }
            if let Some(v) = f("Phase1EncryptionAlgorithm.1.Value") {
                t = t.phase1_encryption_algorithms(
                    Phase1EncryptionAlgorithmsRequestListValue::builder()
                        .value(v)
                        .build(),
                );
            }
            if let Some(v) = f("Phase2EncryptionAlgorithm.1.Value") {
                t = t.phase2_encryption_algorithms(
                    Phase2EncryptionAlgorithmsRequestListValue::builder()
                        .value(v)
                        .build(),
                );
            }
            if let Some(v) = f("Phase1IntegrityAlgorithm.1.Value") {
                t = t.phase1_integrity_algorithms(
                    Phase1IntegrityAlgorithmsRequestListValue::builder()
                        .value(v)
                        .build(),
                );
            }
            if let Some(v) = f("Phase2IntegrityAlgorithm.1.Value") {
                t = t.phase2_integrity_algorithms(
                    Phase2IntegrityAlgorithmsRequestListValue::builder()
                        .value(v)
                        .build(),
                );
            }
            if let Some(v) = f("Phase1DHGroupNumber.1.Value").and_then(|v| v.parse().ok()) {
                t = t.phase1_dh_group_numbers(
                    Phase1DhGroupNumbersRequestListValue::builder()
                        .value(v)
                        .build(),
                );
            }
            if let Some(v) = f("Phase2DHGroupNumber.1.Value").and_then(|v| v.parse().ok()) {
                t = t.phase2_dh_group_numbers(
                    Phase2DhGroupNumbersRequestListValue::builder()
                        .value(v)
                        .build(),
                );
            }
            options = options.tunnel_options(t.build());
        }
        self.client(region)
            .create_vpn_connection()
            .r#type(need(b, "Type")?)
            .customer_gateway_id(need(b, "CustomerGatewayId")?)
            .set_transit_gateway_id(field(b, "TransitGatewayId"))
            .options(options.build())
            .set_tag_specifications(tag_spec(b).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| convert("CreateVpnConnection", e))?;
        let name = name_of(b).unwrap_or_default();
        self.settled(&format!("VPN connection `{name}`"), || {
            self.read_vpn(region, &name)
        })
        .await?
        .ok_or_else(|| ApiError::Transient(format!("VPN connection `{name}` not visible yet")))
    }
}

/// Leave out what EC2 did not report, so it is not compared.
fn drop_nulls(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

fn unsupported(step: &Step) -> ApiError {
    ApiError::Refused(format!(
        "`{}` ({}) is not implemented by the SDK seam yet",
        step.action, step.id
    ))
}

impl NetApi for Ec2 {
    async fn read(&self, step: &Step, body: &Value) -> Result<Option<Value>, ApiError> {
        if step.cloud != Cloud::Aws {
            return Err(unsupported(step));
        }
        let name = name_of(body).unwrap_or_default();
        let r = step.region.as_str();
        let what = format!("`{}`", step.id);
        match step.action {
            "CreateTransitGateway" => self.settled(&what, || self.read_tgw(r, &name)).await,
            "CreateCustomerGateway" => self.settled(&what, || self.read_cgw(r, &name)).await,
            "CreateVpnConnection" => self.settled(&what, || self.read_vpn(r, &name)).await,
            _ => match self.read_link(step, body).await {
                Some(r) => r,
                None => Err(unsupported(step)),
            },
        }
    }

    async fn create(&self, step: &Step, body: &Value) -> Result<Value, ApiError> {
        match step.action {
            "CreateTransitGateway" => self.create_tgw(&step.region, body).await,
            "CreateCustomerGateway" => self.create_cgw(&step.region, body).await,
            "CreateVpnConnection" => self.create_vpn(&step.region, body).await,
            _ => match self.create_link(step, body).await {
                Some(r) => r,
                None => Err(unsupported(step)),
            },
        }
    }

    async fn update(
        &self,
        step: &Step,
        body: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        if step.cloud != Cloud::Aws {
            return Err(unsupported(step));
        }
        self.update_any(step, body, current, fields).await
    }

    async fn capa_vpc(&self, region: &str, cluster: &str) -> Result<Option<CapaVpc>, ApiError> {
        let ec2 = self.client(region);
        let tag = capa_tag(cluster);
        let vpcs = ec2
            .describe_vpcs()
            .filters(Filter::builder().name("tag-key").values(&tag).build())
            .send()
            .await
            .map_err(|e| convert("DescribeVpcs", e))?;
        let Some(vpc) = vpcs
            .vpcs()
            .iter()
            .find(|v| v.tags().iter().any(|t| t.key() == Some(tag.as_str())))
            .and_then(|v| v.vpc_id())
        else {
            return Ok(None);
        };
        // CAPA marks a subnet's role with `NameAWSClusterAPIRole` = `PrivateRoleTagValue`
        // (cluster-api-provider-aws:`api/v1beta2/tags.go`@v2.11.1: `sigs.k8s.io/cluster-api-provider-aws/role`
        // = `private`), and gives every subnet a route table of its own
        // (`pkg/cloud/services/network/routetables.go`@v2.11.1, `reconcileRouteTables`).
        let subnets = ec2
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .filters(
                Filter::builder()
                    .name("tag:sigs.k8s.io/cluster-api-provider-aws/role")
                    .values("private")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| convert("DescribeSubnets", e))?;
        let private_subnet_ids: Vec<String> = subnets
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect();
        let tables = ec2
            .describe_route_tables()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .map_err(|e| convert("DescribeRouteTables", e))?;
        let route_table_ids: Vec<String> = tables
            .route_tables()
            .iter()
            .filter(|t| {
                t.associations().iter().any(|a| {
                    a.subnet_id()
                        .is_some_and(|s| private_subnet_ids.iter().any(|p| p == s))
                })
            })
            .filter_map(|t| t.route_table_id().map(str::to_owned))
            .collect();
        Ok(Some(CapaVpc {
            vpc_id: vpc.to_owned(),
            private_subnet_ids,
            route_table_ids,
        }))
    }

    async fn account_id(&self) -> Result<String, ApiError> {
        let sts = aws_sdk_sts::Client::new(&self.config);
        let out = sts.get_caller_identity().send().await.map_err(|e| {
            let msg = format!("sts:GetCallerIdentity: {}", DisplayErrorContext(&e));
            match e {
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                    ApiError::Transient(msg)
                }
                _ => ApiError::Refused(msg),
            }
        })?;
        out.account()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Refused("sts:GetCallerIdentity returned no account".into()))
    }
}
