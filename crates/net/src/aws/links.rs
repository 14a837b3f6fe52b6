//! The EC2 steps that join VPCs: Transit Gateway VPC and peering attachments, the peering's
//! acceptance, static routes in a Transit Gateway's table, VPC peering connections and their
//! acceptance, and routes in CAPA's route tables; plus the updates EC2 allows.
//!
//! How each is found (EC2 API reference, actions of the same names):
//! - a VPC attachment by its Transit Gateway and VPC (EC2 allows one per pair), peering
//!   attachments and peering connections by their `Name` tag; ignoring those `deleted`,
//!   `rejected`, `failed` or going there;
//! - an acceptance by the attachment or connection id, in the accepter's region: it is done
//!   once the state has left `pendingAcceptance` / `pending-acceptance`;
//! - a Transit Gateway route by table and destination (`SearchTransitGatewayRoutes`,
//!   `route-search.exact-match`, `type=static`);
//! - a VPC route by destination in each of CAPA's private route tables (`DescribeRouteTables`):
//!   the result's `RouteTableId` lists the tables that have it, so a table missing the route
//!   (or routing it elsewhere) shows as a difference and the update adds (`CreateRoute`) or
//!   repoints (`ReplaceRoute`) it there.
//!
//! Resources still changing (`pending`, `modifying`, `initiatingRequest`, `provisioning`) are
//! polled until they settle (see [`Ec2::with_settle`]): a route to a Transit Gateway fails
//! while its VPC attachment is `pending`, and an acceptance fails before the accepter's region
//! sees the request.

use std::future::Future;
use std::time::Instant;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    DefaultRouteTableAssociationValue, DefaultRouteTablePropagationValue, Filter,
    ModifyTransitGatewayOptions, ModifyVpnTunnelOptionsSpecification, VpnEcmpSupportValue,
};
use serde_json::{Value, json};

use super::{Ec2, convert, drop_nulls, field, name_of, named, need, tag_spec};
use crate::desired::Step;
use crate::exec::ApiError;

/// States a resource passes through on its own; polled until it leaves them.
const SETTLING: [&str; 6] = [
    "pending",
    "modifying",
    "initiating",
    "initiatingRequest",
    "initiating-request",
    "provisioning",
];

/// Gone, going or refused: not what a step made (attachments, peering connections).
fn over(state: Option<&str>) -> bool {
    matches!(
        state,
        Some(
            "deleted"
                | "deleting"
                | "failed"
                | "failing"
                | "rejected"
                | "rejecting"
                | "expired"
                | "rollingBack"
        )
    )
}

/// A list field of a resolved body: a JSON array (`${capa:…}` lists) or one string.
fn list(b: &Value, k: &str) -> Vec<String> {
    match b.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => vec![],
    }
}

/// `have` in the order of `want` when both hold the same ids (EC2 does not keep the order).
fn same_order(want: Vec<String>, have: Vec<String>) -> Vec<String> {
    let mut w = want.clone();
    let mut h = have.clone();
    w.sort();
    h.sort();
    if w == h { want } else { have }
}

fn state_of(v: &Option<Value>) -> Option<String> {
    v.as_ref()?.get("state")?.as_str().map(str::to_owned)
}

impl Ec2 {
    /// Poll `read` while what it finds is still settling.
    pub(super) async fn settled<F, Fut>(
        &self,
        what: &str,
        mut read: F,
    ) -> Result<Option<Value>, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<Value>, ApiError>>,
    {
        let start = Instant::now();
        loop {
            let v = read().await?;
            match state_of(&v) {
                Some(s) if SETTLING.contains(&s.as_str()) => {
                    if start.elapsed() >= self.settle {
                        return Err(ApiError::Transient(format!(
                            "{what} is still `{s}` after {:?}",
                            self.settle
                        )));
                    }
                    tokio::time::sleep(self.poll).await;
                }
                _ => return Ok(v),
            }
        }
    }

    /// A VPC's attachment to a Transit Gateway, by its key: EC2 allows one non-deleted
    /// attachment per gateway and VPC (`DuplicateTransitGatewayAttachment` otherwise), so
    /// the pair finds it even where the `Name` tag was lost.
    async fn read_vpc_att(&self, region: &str, b: &Value) -> Result<Option<Value>, ApiError> {
        let (tgw, vpc) = (need(b, "TransitGatewayId")?, need(b, "VpcId")?);
        let out = self
            .client(region)
            .describe_transit_gateway_vpc_attachments()
            .filters(
                Filter::builder()
                    .name("transit-gateway-id")
                    .values(&tgw)
                    .build(),
            )
            .filters(Filter::builder().name("vpc-id").values(&vpc).build())
            .send()
            .await
            .map_err(|e| convert("DescribeTransitGatewayVpcAttachments", e))?;
        Ok(out
            .transit_gateway_vpc_attachments()
            .iter()
            .filter(|a| a.transit_gateway_id() == Some(tgw.as_str()))
            .filter(|a| a.vpc_id() == Some(vpc.as_str()))
            .find(|a| !over(a.state().map(|s| s.as_str())))
            .map(|a| {
                let subnets = same_order(list(b, "SubnetIds"), a.subnet_ids().to_vec());
                drop_nulls(json!({
                    "transitGatewayAttachmentId": a.transit_gateway_attachment_id(),
                    "TransitGatewayId": a.transit_gateway_id(),
                    "VpcId": a.vpc_id(),
                    "SubnetIds": subnets,
                    "state": a.state().map(|s| s.as_str()),
                }))
            }))
    }

    async fn create_vpc_att(&self, region: &str, b: &Value) -> Result<(), ApiError> {
        let subnets = list(b, "SubnetIds");
        if subnets.is_empty() {
            return Err(ApiError::Refused(
                "CAPA's VPC has no private subnets to attach (tagged `sigs.k8s.io/cluster-api-provider-aws/role=private`)".into(),
            ));
        }
        self.client(region)
            .create_transit_gateway_vpc_attachment()
            .transit_gateway_id(need(b, "TransitGatewayId")?)
            .vpc_id(need(b, "VpcId")?)
            .set_subnet_ids(Some(subnets))
            .set_tag_specifications(tag_spec(b).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| convert("CreateTransitGatewayVpcAttachment", e))?;
        Ok(())
    }

    async fn read_tgw_peering(&self, region: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let out = self
            .client(region)
            .describe_transit_gateway_peering_attachments()
            .filters(Filter::builder().name("tag:Name").values(name).build())
            .send()
            .await
            .map_err(|e| convert("DescribeTransitGatewayPeeringAttachments", e))?;
        Ok(out
            .transit_gateway_peering_attachments()
            .iter()
            .filter(|a| named(a.tags(), name))
            .find(|a| !over(a.state().map(|s| s.as_str())))
            .map(|a| {
                let req = a.requester_tgw_info();
                let acc = a.accepter_tgw_info();
                drop_nulls(json!({
                    "transitGatewayAttachmentId": a.transit_gateway_attachment_id(),
                    "TransitGatewayId": req.and_then(|i| i.transit_gateway_id()),
                    "PeerTransitGatewayId": acc.and_then(|i| i.transit_gateway_id()),
                    "PeerRegion": acc.and_then(|i| i.region()),
                    "PeerAccountId": acc.and_then(|i| i.owner_id()),
                    "state": a.state().map(|s| s.as_str()),
                }))
            }))
    }

    async fn create_tgw_peering(&self, region: &str, b: &Value) -> Result<(), ApiError> {
        self.client(region)
            .create_transit_gateway_peering_attachment()
            .transit_gateway_id(need(b, "TransitGatewayId")?)
            .peer_transit_gateway_id(need(b, "PeerTransitGatewayId")?)
            .peer_region(need(b, "PeerRegion")?)
            .peer_account_id(need(b, "PeerAccountId")?)
            .set_tag_specifications(tag_spec(b).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| convert("CreateTransitGatewayPeeringAttachment", e))?;
        Ok(())
    }

    /// The peering attachment as the accepter's region sees it: `None` while it waits for
    /// acceptance.
    async fn read_tgw_accept(&self, region: &str, b: &Value) -> Result<Option<Value>, ApiError> {
        let id = need(b, "TransitGatewayAttachmentId")?;
        let out = self
            .client(region)
            .describe_transit_gateway_peering_attachments()
            .transit_gateway_attachment_ids(&id)
            .send()
            .await;
        let out = match out {
            Err(e) if e.code().is_some_and(|c| c.ends_with(".NotFound")) => {
                return Err(ApiError::Transient(format!(
                    "peering attachment {id} is not visible in {region} yet"
                )));
            }
            other => other.map_err(|e| convert("DescribeTransitGatewayPeeringAttachments", e))?,
        };
        let Some(a) = out
            .transit_gateway_peering_attachments()
            .iter()
            .find(|a| a.transit_gateway_attachment_id() == Some(id.as_str()))
        else {
            return Err(ApiError::Transient(format!(
                "peering attachment {id} is not visible in {region} yet"
            )));
        };
        let state = a.state().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if over(Some(&state)) {
            return Err(ApiError::Refused(format!(
                "peering attachment {id} is `{state}` and cannot be accepted\n  hint: delete it in the requester's region and re-run `meshfleet net setup` to request a new one"
            )));
        }
        Ok((state != "pendingAcceptance")
            .then(|| json!({"TransitGatewayAttachmentId": id, "state": state})))
    }

    async fn read_tgw_route(&self, region: &str, b: &Value) -> Result<Option<Value>, ApiError> {
        let table = need(b, "TransitGatewayRouteTableId")?;
        let dest = need(b, "DestinationCidrBlock")?;
        let out = self
            .client(region)
            .search_transit_gateway_routes()
            .transit_gateway_route_table_id(&table)
            .filters(
                Filter::builder()
                    .name("route-search.exact-match")
                    .values(&dest)
                    .build(),
            )
            .filters(Filter::builder().name("type").values("static").build())
            .send()
            .await
            .map_err(|e| convert("SearchTransitGatewayRoutes", e))?;
        Ok(out
            .routes()
            .iter()
            .filter(|r| r.destination_cidr_block() == Some(dest.as_str()))
            .find(|r| !matches!(r.state().map(|s| s.as_str()), Some("deleted" | "deleting")))
            .map(|r| {
                let mut v = json!({
                    "TransitGatewayRouteTableId": table,
                    "DestinationCidrBlock": dest,
                });
                let att = r
                    .transit_gateway_attachments()
                    .first()
                    .and_then(|a| a.transit_gateway_attachment_id());
                if r.state().map(|s| s.as_str()) == Some("blackhole") {
                    // Its attachment is gone: a difference, repaired by replacing the route.
                    v["TransitGatewayAttachmentId"] = json!(att.unwrap_or("(blackhole)"));
                } else if let Some(att) = att {
                    v["TransitGatewayAttachmentId"] = json!(att);
                }
                // An active route that names no attachment (moto) leaves it uncompared.
                v
            }))
    }

    async fn put_tgw_route(&self, region: &str, b: &Value, replace: bool) -> Result<(), ApiError> {
        let c = self.client(region);
        let (table, dest, att) = (
            need(b, "TransitGatewayRouteTableId")?,
            need(b, "DestinationCidrBlock")?,
            need(b, "TransitGatewayAttachmentId")?,
        );
        if replace {
            c.replace_transit_gateway_route()
                .transit_gateway_route_table_id(table)
                .destination_cidr_block(dest)
                .transit_gateway_attachment_id(att)
                .send()
                .await
                .map_err(|e| convert("ReplaceTransitGatewayRoute", e))?;
        } else {
            c.create_transit_gateway_route()
                .transit_gateway_route_table_id(table)
                .destination_cidr_block(dest)
                .transit_gateway_attachment_id(att)
                .send()
                .await
                .map_err(|e| convert("CreateTransitGatewayRoute", e))?;
        }
        Ok(())
    }

    async fn read_pcx(&self, region: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let out = self
            .client(region)
            .describe_vpc_peering_connections()
            .filters(Filter::builder().name("tag:Name").values(name).build())
            .send()
            .await
            .map_err(|e| convert("DescribeVpcPeeringConnections", e))?;
        Ok(out
            .vpc_peering_connections()
            .iter()
            .filter(|p| named(p.tags(), name))
            .find(|p| !over(p.status().and_then(|s| s.code()).map(|c| c.as_str())))
            .map(|p| {
                let req = p.requester_vpc_info();
                let acc = p.accepter_vpc_info();
                drop_nulls(json!({
                    "vpcPeeringConnectionId": p.vpc_peering_connection_id(),
                    "VpcId": req.and_then(|i| i.vpc_id()),
                    "PeerVpcId": acc.and_then(|i| i.vpc_id()),
                    "PeerRegion": acc.and_then(|i| i.region()),
                    "state": p.status().and_then(|s| s.code()).map(|c| c.as_str()),
                }))
            }))
    }

    async fn create_pcx(&self, region: &str, b: &Value) -> Result<(), ApiError> {
        self.client(region)
            .create_vpc_peering_connection()
            .vpc_id(need(b, "VpcId")?)
            .peer_vpc_id(need(b, "PeerVpcId")?)
            .set_peer_region(field(b, "PeerRegion"))
            .set_tag_specifications(tag_spec(b).map(|t| vec![t]))
            .send()
            .await
            .map_err(|e| convert("CreateVpcPeeringConnection", e))?;
        Ok(())
    }

    /// The peering connection as the accepter's region sees it: `None` while it waits for
    /// acceptance.
    async fn read_pcx_accept(&self, region: &str, b: &Value) -> Result<Option<Value>, ApiError> {
        let id = need(b, "VpcPeeringConnectionId")?;
        let out = self
            .client(region)
            .describe_vpc_peering_connections()
            .vpc_peering_connection_ids(&id)
            .send()
            .await;
        let out = match out {
            Err(e) if e.code().is_some_and(|c| c.ends_with(".NotFound")) => {
                return Err(ApiError::Transient(format!(
                    "VPC peering connection {id} is not visible in {region} yet"
                )));
            }
            other => other.map_err(|e| convert("DescribeVpcPeeringConnections", e))?,
        };
        let Some(p) = out
            .vpc_peering_connections()
            .iter()
            .find(|p| p.vpc_peering_connection_id() == Some(id.as_str()))
        else {
            return Err(ApiError::Transient(format!(
                "VPC peering connection {id} is not visible in {region} yet"
            )));
        };
        let state = p
            .status()
            .and_then(|s| s.code())
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default();
        if over(Some(&state)) {
            return Err(ApiError::Refused(format!(
                "VPC peering connection {id} is `{state}` and cannot be accepted\n  hint: delete it in the requester's region and re-run `meshfleet net setup` to request a new one"
            )));
        }
        Ok((state != "pending-acceptance")
            .then(|| json!({"VpcPeeringConnectionId": id, "state": state})))
    }

    /// The route target key a `CreateRoute` body uses and its value.
    fn route_target(b: &Value) -> Result<(&'static str, String), ApiError> {
        for k in ["TransitGatewayId", "VpcPeeringConnectionId"] {
            if let Some(v) = field(b, k) {
                return Ok((k, v));
            }
        }
        Err(ApiError::Refused(
            "the route has neither `TransitGatewayId` nor `VpcPeeringConnectionId`".into(),
        ))
    }

    /// Per route table of the body: the target its route to the destination has (`None`:
    /// no such route).
    async fn route_targets(
        &self,
        region: &str,
        b: &Value,
    ) -> Result<Vec<(String, Option<String>)>, ApiError> {
        let tables = list(b, "RouteTableId");
        if tables.is_empty() {
            return Err(ApiError::Refused(
                "CAPA's VPC has no route tables of private subnets to add the route to".into(),
            ));
        }
        let dest = need(b, "DestinationCidrBlock")?;
        let out = self
            .client(region)
            .describe_route_tables()
            .set_route_table_ids(Some(tables.clone()))
            .send()
            .await
            .map_err(|e| convert("DescribeRouteTables", e))?;
        Ok(tables
            .into_iter()
            .map(|t| {
                let target = out
                    .route_tables()
                    .iter()
                    .filter(|rt| rt.route_table_id() == Some(t.as_str()))
                    .flat_map(|rt| rt.routes())
                    .find(|r| r.destination_cidr_block() == Some(dest.as_str()))
                    .map(|r| {
                        r.transit_gateway_id()
                            .or(r.vpc_peering_connection_id())
                            .or(r.gateway_id())
                            .or(r.nat_gateway_id())
                            .or(r.network_interface_id())
                            .unwrap_or("(another target)")
                            .to_owned()
                    });
                (t, target)
            })
            .collect())
    }

    async fn read_route(&self, region: &str, b: &Value) -> Result<Option<Value>, ApiError> {
        let (key, want) = Self::route_target(b)?;
        let per = self.route_targets(region, b).await?;
        let present: Vec<&(String, Option<String>)> =
            per.iter().filter(|(_, t)| t.is_some()).collect();
        if present.is_empty() {
            return Ok(None);
        }
        let target = present
            .iter()
            .filter_map(|(_, t)| t.clone())
            .find(|t| *t != want)
            .unwrap_or(want);
        Ok(Some(json!({
            "RouteTableId": present.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
            "DestinationCidrBlock": need(b, "DestinationCidrBlock")?,
            key: target,
        })))
    }

    /// Make every table of the body route the destination to the body's target: create it
    /// where absent, replace it where it points elsewhere.
    async fn put_routes(&self, region: &str, b: &Value) -> Result<(), ApiError> {
        let (key, want) = Self::route_target(b)?;
        let dest = need(b, "DestinationCidrBlock")?;
        let c = self.client(region);
        for (table, have) in self.route_targets(region, b).await? {
            let pcx = (key == "VpcPeeringConnectionId").then(|| want.clone());
            let tgw = (key == "TransitGatewayId").then(|| want.clone());
            match have {
                Some(h) if h == want => {}
                Some(_) => {
                    c.replace_route()
                        .route_table_id(&table)
                        .destination_cidr_block(&dest)
                        .set_transit_gateway_id(tgw)
                        .set_vpc_peering_connection_id(pcx)
                        .send()
                        .await
                        .map_err(|e| convert("ReplaceRoute", e))?;
                }
                None => {
                    c.create_route()
                        .route_table_id(&table)
                        .destination_cidr_block(&dest)
                        .set_transit_gateway_id(tgw)
                        .set_vpc_peering_connection_id(pcx)
                        .send()
                        .await
                        .map_err(|e| convert("CreateRoute", e))?;
                }
            }
        }
        Ok(())
    }

    /// Read a step of this module (settled); `None` for actions it does not serve.
    pub(super) async fn read_link(
        &self,
        step: &Step,
        b: &Value,
    ) -> Option<Result<Option<Value>, ApiError>> {
        let r = step.region.as_str();
        let name = name_of(b).unwrap_or_default();
        let what = format!("`{}`", step.id);
        Some(match step.action {
            "CreateTransitGatewayVpcAttachment" => {
                self.settled(&what, || self.read_vpc_att(r, b)).await
            }
            "CreateTransitGatewayPeeringAttachment" => {
                self.settled(&what, || self.read_tgw_peering(r, &name))
                    .await
            }
            "AcceptTransitGatewayPeeringAttachment" => {
                self.settled(&what, || self.read_tgw_accept(r, b)).await
            }
            "CreateTransitGatewayRoute" => self.read_tgw_route(r, b).await,
            "CreateVpcPeeringConnection" => self.settled(&what, || self.read_pcx(r, &name)).await,
            "AcceptVpcPeeringConnection" => {
                self.settled(&what, || self.read_pcx_accept(r, b)).await
            }
            "CreateRoute" => self.read_route(r, b).await,
            _ => return None,
        })
    }

    /// Create a step of this module and read it back; `None` for actions it does not serve.
    pub(super) async fn create_link(
        &self,
        step: &Step,
        b: &Value,
    ) -> Option<Result<Value, ApiError>> {
        let r = step.region.as_str();
        let done = match step.action {
            "CreateTransitGatewayVpcAttachment" => self.create_vpc_att(r, b).await,
            "CreateTransitGatewayPeeringAttachment" => self.create_tgw_peering(r, b).await,
            "AcceptTransitGatewayPeeringAttachment" => self
                .client(r)
                .accept_transit_gateway_peering_attachment()
                .set_transit_gateway_attachment_id(field(b, "TransitGatewayAttachmentId"))
                .send()
                .await
                .map(drop)
                .map_err(|e| convert("AcceptTransitGatewayPeeringAttachment", e)),
            "CreateTransitGatewayRoute" => self.put_tgw_route(r, b, false).await,
            "CreateVpcPeeringConnection" => self.create_pcx(r, b).await,
            "AcceptVpcPeeringConnection" => self
                .client(r)
                .accept_vpc_peering_connection()
                .set_vpc_peering_connection_id(field(b, "VpcPeeringConnectionId"))
                .send()
                .await
                .map(drop)
                .map_err(|e| convert("AcceptVpcPeeringConnection", e)),
            "CreateRoute" => self.put_routes(r, b).await,
            _ => return None,
        };
        Some(match done {
            Err(e) => Err(e),
            Ok(()) => self.read_back(step, b).await,
        })
    }

    /// What a step's read finds right after a write (eventual consistency: absent is
    /// transient).
    pub(super) async fn read_back(&self, step: &Step, b: &Value) -> Result<Value, ApiError> {
        let got = match self.read_link(step, b).await {
            Some(r) => r,
            None => super::NetApi::read(self, step, b).await,
        };
        got?.ok_or_else(|| {
            ApiError::Transient(format!("`{}` is not visible yet after the write", step.id))
        })
    }

    /// Bring a resource to the body where EC2 can change the differing fields in place;
    /// otherwise a refusal naming them and the fix.
    pub(super) async fn update_any(
        &self,
        step: &Step,
        b: &Value,
        current: &Value,
        fields: &[String],
    ) -> Result<Value, ApiError> {
        let r = step.region.as_str();
        let only = |allowed: &[&str]| fields.iter().all(|f| allowed.contains(&f.as_str()));
        match step.action {
            "CreateRoute" => self.put_routes(r, b).await?,
            "CreateTransitGatewayRoute" if only(&["TransitGatewayAttachmentId"]) => {
                self.put_tgw_route(r, b, true).await?
            }
            "CreateTransitGatewayVpcAttachment" if only(&["SubnetIds"]) => {
                let want = list(b, "SubnetIds");
                let have = list(current, "SubnetIds");
                self.client(r)
                    .modify_transit_gateway_vpc_attachment()
                    .transit_gateway_attachment_id(need(current, "transitGatewayAttachmentId")?)
                    .set_add_subnet_ids(Some(
                        want.iter().filter(|s| !have.contains(s)).cloned().collect(),
                    ))
                    .set_remove_subnet_ids(Some(
                        have.iter().filter(|s| !want.contains(s)).cloned().collect(),
                    ))
                    .send()
                    .await
                    .map_err(|e| convert("ModifyTransitGatewayVpcAttachment", e))?;
            }
            "CreateTransitGateway"
                if only(&[
                    "Options.AmazonSideAsn",
                    "Options.DefaultRouteTableAssociation",
                    "Options.DefaultRouteTablePropagation",
                    "Options.VpnEcmpSupport",
                ]) =>
            {
                let mut o = ModifyTransitGatewayOptions::builder();
                for f in fields {
                    let v = need(b, f)?;
                    o = match f.as_str() {
                        "Options.AmazonSideAsn" => o.amazon_side_asn(v.parse().map_err(|_| {
                            ApiError::Refused("Options.AmazonSideAsn is not a number".into())
                        })?),
                        "Options.DefaultRouteTableAssociation" => o
                            .default_route_table_association(
                                DefaultRouteTableAssociationValue::from(v.as_str()),
                            ),
                        "Options.DefaultRouteTablePropagation" => o
                            .default_route_table_propagation(
                                DefaultRouteTablePropagationValue::from(v.as_str()),
                            ),
                        _ => o.vpn_ecmp_support(VpnEcmpSupportValue::from(v.as_str())),
                    };
                }
                self.client(r)
                    .modify_transit_gateway()
                    .transit_gateway_id(need(current, "transitGatewayId")?)
                    .options(o.build())
                    .send()
                    .await
                    .map_err(|e| convert("ModifyTransitGateway", e))?;
            }
            "CreateVpnConnection"
                if fields.iter().all(|f| {
                    f == "TransitGatewayId"
                        || f == "CustomerGatewayId"
                        || f.ends_with(".PreSharedKey")
                        || f.ends_with(".TunnelInsideCidr")
                }) =>
            {
                let id = need(current, "vpnConnectionId")?;
                let c = self.client(r);
                if fields
                    .iter()
                    .any(|f| f == "TransitGatewayId" || f == "CustomerGatewayId")
                {
                    let changed = |k: &str| fields.iter().any(|f| f == k).then(|| field(b, k));
                    c.modify_vpn_connection()
                        .vpn_connection_id(&id)
                        .set_transit_gateway_id(changed("TransitGatewayId").flatten())
                        .set_customer_gateway_id(changed("CustomerGatewayId").flatten())
                        .send()
                        .await
                        .map_err(|e| convert("ModifyVpnConnection", e))?;
                }
                for k in 1..=2 {
                    let p = format!("Options.TunnelOptions.{k}");
                    let changed = |x: &str| {
                        let key = format!("{p}.{x}");
                        fields.contains(&key).then(|| field(b, &key)).flatten()
                    };
                    let (psk, inside) = (changed("PreSharedKey"), changed("TunnelInsideCidr"));
                    if psk.is_none() && inside.is_none() {
                        continue;
                    }
                    let outside = current
                        .pointer(&format!("/tunnels/{}/outsideIpAddress", k - 1))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::Refused(format!("VPN connection {id} has no tunnel {k}"))
                        })?;
                    c.modify_vpn_tunnel_options()
                        .vpn_connection_id(&id)
                        .vpn_tunnel_outside_ip_address(outside)
                        .tunnel_options(
                            ModifyVpnTunnelOptionsSpecification::builder()
                                .set_pre_shared_key(psk)
                                .set_tunnel_inside_cidr(inside)
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| convert("ModifyVpnTunnelOptions", e))?;
                }
            }
            _ => {
                let resource = [
                    "transitGatewayAttachmentId",
                    "vpcPeeringConnectionId",
                    "customerGatewayId",
                    "vpnConnectionId",
                    "transitGatewayId",
                ]
                .iter()
                .find_map(|k| field(current, k))
                .unwrap_or_default();
                return Err(ApiError::Refused(format!(
                    "`{}` ({resource} in {r}) differs in {}, which EC2 cannot change on an existing resource\n  hint: delete {resource} in {r} and re-run `meshfleet net setup`, which makes it anew",
                    step.id,
                    fields.join(", ")
                )));
            }
        }
        self.read_back(step, b).await
    }
}
