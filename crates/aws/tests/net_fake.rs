//! The simulator's AWS fake serves the EC2 calls of the interconnect steps through the real
//! SDK client: CAPA's VPC found by its cluster tag, a Transit Gateway, customer gateways and a
//! VPN connection whose tunnel outside addresses come back (what GCP's external VPN gateway
//! needs, and what moto leaves empty).

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_ec2::types::{
    Filter, ResourceType, Tag, TagSpecification, TransitGatewayRequestOptions,
    VpnConnectionOptionsSpecification, VpnTunnelOptionsSpecification,
};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use meshfleet_sim::aws::{Aws, serve};

async fn client() -> (
    Arc<Aws>,
    aws_sdk_ec2::Client,
    tokio::sync::watch::Sender<bool>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let aws = Arc::new(Aws::open(None, url.clone(), 50.0).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(aws.clone(), listener, rx));
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("eu-west-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    (aws, aws_sdk_ec2::Client::new(&conf), stop)
}

fn named(rt: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

#[tokio::test]
async fn tgw_customer_gateways_and_vpn_through_the_sdk() {
    let (aws, ec2, _stop) = client().await;
    let vpc = aws.capa_vpc("eu-west-1", "default/aws-euw1", "10.0.32.0/20");
    let found = ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag-key")
                .values("sigs.k8s.io/cluster-api-provider-aws/cluster/aws-euw1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpcs = found.vpcs();
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0].vpc_id(), Some(vpc.as_str()));
    assert_eq!(vpcs[0].cidr_block(), Some("10.0.32.0/20"));

    let tgw = ec2
        .create_transit_gateway()
        .options(
            TransitGatewayRequestOptions::builder()
                .amazon_side_asn(64512)
                .build(),
        )
        .tag_specifications(named(ResourceType::TransitGateway, "mf-x-eu-west-1"))
        .send()
        .await
        .unwrap();
    let tgw = tgw.transit_gateway().unwrap();
    let tgw_id = tgw.transit_gateway_id().unwrap().to_owned();
    assert_eq!(tgw.options().unwrap().amazon_side_asn(), Some(64512));
    assert!(
        tgw.options()
            .unwrap()
            .association_default_route_table_id()
            .is_some()
    );
    let listed = ec2.describe_transit_gateways().send().await.unwrap();
    assert_eq!(listed.transit_gateways().len(), 1);
    assert_eq!(
        listed.transit_gateways()[0].tags()[0].value(),
        Some("mf-x-eu-west-1")
    );

    let cgw = ec2
        .create_customer_gateway()
        .r#type(aws_sdk_ec2::types::GatewayType::Ipsec1)
        .ip_address("35.242.0.1")
        .bgp_asn(65010)
        .send()
        .await
        .unwrap();
    let cgw_id = cgw
        .customer_gateway()
        .unwrap()
        .customer_gateway_id()
        .unwrap()
        .to_owned();

    let tunnel = |cidr: &str, psk: &str| {
        VpnTunnelOptionsSpecification::builder()
            .tunnel_inside_cidr(cidr)
            .pre_shared_key(psk)
            .build()
    };
    let vpn = ec2
        .create_vpn_connection()
        .r#type("ipsec.1")
        .customer_gateway_id(&cgw_id)
        .transit_gateway_id(&tgw_id)
        .options(
            VpnConnectionOptionsSpecification::builder()
                .static_routes_only(false)
                .tunnel_options(tunnel("169.254.16.0/30", "keyAAAAAAAA"))
                .tunnel_options(tunnel("169.254.16.4/30", "keyBBBBBBBB"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let vpn = vpn.vpn_connection().unwrap();
    let opts = vpn.options().unwrap().tunnel_options();
    assert_eq!(opts.len(), 2);
    for (t, cidr) in opts.iter().zip(["169.254.16.0/30", "169.254.16.4/30"]) {
        assert!(
            t.outside_ip_address().is_some_and(|ip| !ip.is_empty()),
            "{t:?}"
        );
        assert_eq!(t.tunnel_inside_cidr(), Some(cidr));
    }
    let again = ec2
        .describe_vpn_connections()
        .vpn_connection_ids(vpn.vpn_connection_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(again.vpn_connections().len(), 1);
    assert_eq!(
        again.vpn_connections()[0].transit_gateway_id(),
        Some(tgw_id.as_str())
    );

    // The connection's attachment propagates into the gateway's table (default propagation).
    aws.read(|st| {
        let t = &st.ec2.transit_gateways[&tgw_id];
        assert_eq!(t.propagations.len(), 1);
    });

    // An unknown customer gateway is EC2's NotFound.
    let e = ec2
        .create_vpn_connection()
        .r#type("ipsec.1")
        .customer_gateway_id("cgw-nope")
        .transit_gateway_id(&tgw_id)
        .send()
        .await
        .unwrap_err();
    let code = e.into_service_error().meta().code().map(str::to_owned);
    assert_eq!(code.as_deref(), Some("InvalidCustomerGatewayID.NotFound"));
}
