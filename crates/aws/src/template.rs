//! meshfleet's own CloudFormation template for CAPA's IAM: typed structs serialised to the JSON
//! template format, so the stack body is deterministic and golden-tested.
//!
//! The resource names are the ones CAPA and `clusterawsadm` use, so an account bootstrapped by
//! `clusterawsadm bootstrap iam create-cloudformation-stack` is recognised (same stack name) and
//! converged, and the AWSMachineTemplates' `iamInstanceProfile` names resolve
//! (kubernetes-sigs/cluster-api-provider-aws:
//! `cmd/clusterawsadm/cloudformation/bootstrap/fixtures/default.yaml`@v2.11.1 lists the roles,
//! instance profiles and managed policies of the default stack).
//!
//! Least privilege relative to that default stack, because meshfleet renders less:
//! - no EKS: no `eks-controlplane` role, no `controllers-eks` policy, no `eks:*` actions, no
//!   EKS-managed policies (`AmazonEKSWorkerNodePolicy`, `AmazonEKS_CNI_Policy`) on the nodes
//!   (meshfleet's CNI is Cilium, not the VPC CNI);
//! - no Secrets Manager: meshfleet's AWSMachineTemplates set
//!   `cloudInit.insecureSkipSecretsManager: true` (crates/render/src/aws.rs), and CAPA then
//!   passes bootstrap data in user data instead of a secret
//!   (cluster-api-provider-aws:`pkg/cloud/scope/machine.go`@v2.11.1, `UseSecretsManager`);
//! - no AWSMachinePool or spot support: meshfleet renders MachineDeployments on on-demand
//!   instances, so no Auto Scaling writes and no autoscaling/spot service-linked roles;
//! - no SSM agent permissions on the nodes: Talos runs no SSM agent.
//!
//! Nothing is `*:*`; the only wildcard resources are on actions that EC2 and ELB do not scope
//! by resource (describes, creates of new resources).

use std::collections::BTreeMap;

use serde::Serialize;

/// The stack name `clusterawsadm` uses (and render writes to `prerequisites/aws.yaml`).
pub const STACK_NAME: &str = "cluster-api-provider-aws-sigs-k8s-io";

/// Suffix of every IAM name CAPA expects.
pub const NAME_SUFFIX: &str = ".cluster-api-provider-aws.sigs.k8s.io";

/// The three CAPA IAM identities (each a role, an instance profile and a managed policy).
pub const IDENTITIES: [&str; 3] = ["control-plane", "controllers", "nodes"];

/// A CloudFormation template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    /// Always `2010-09-09`.
    #[serde(rename = "AWSTemplateFormatVersion")]
    pub format_version: &'static str,
    /// Says who owns the stack.
    #[serde(rename = "Description")]
    pub description: String,
    /// Resources by logical id (sorted: the body is deterministic).
    #[serde(rename = "Resources")]
    pub resources: BTreeMap<String, Resource>,
}

/// One resource: `{"Type": ..., "Properties": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "Type", content = "Properties")]
pub enum Resource {
    /// `AWS::IAM::Role`.
    #[serde(rename = "AWS::IAM::Role")]
    Role(RoleProps),
    /// `AWS::IAM::InstanceProfile`.
    #[serde(rename = "AWS::IAM::InstanceProfile")]
    InstanceProfile(InstanceProfileProps),
    /// `AWS::IAM::ManagedPolicy`.
    #[serde(rename = "AWS::IAM::ManagedPolicy")]
    ManagedPolicy(ManagedPolicyProps),
}

impl Resource {
    /// The physical name (role, instance-profile or policy name).
    pub fn physical_name(&self) -> &str {
        match self {
            Self::Role(p) => &p.role_name,
            Self::InstanceProfile(p) => &p.instance_profile_name,
            Self::ManagedPolicy(p) => &p.managed_policy_name,
        }
    }

    /// The CloudFormation type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Role(_) => "AWS::IAM::Role",
            Self::InstanceProfile(_) => "AWS::IAM::InstanceProfile",
            Self::ManagedPolicy(_) => "AWS::IAM::ManagedPolicy",
        }
    }
}

/// `AWS::IAM::Role` properties.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleProps {
    /// Role name.
    pub role_name: String,
    /// Who may assume the role.
    pub assume_role_policy_document: PolicyDocument,
}

/// `AWS::IAM::InstanceProfile` properties.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceProfileProps {
    /// Instance-profile name (what AWSMachineTemplates name in `iamInstanceProfile`).
    pub instance_profile_name: String,
    /// The role (exactly one: EC2 allows one role per instance profile).
    pub roles: Vec<Ref>,
}

/// `AWS::IAM::ManagedPolicy` properties.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagedPolicyProps {
    /// Policy name.
    pub managed_policy_name: String,
    /// What it is for.
    pub description: String,
    /// The permissions.
    pub policy_document: PolicyDocument,
    /// Roles it is attached to.
    pub roles: Vec<Ref>,
}

/// `{"Ref": "<logical id>"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ref {
    /// The logical id referred to.
    #[serde(rename = "Ref")]
    pub target: String,
}

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    pub version: &'static str,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One `Allow` statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Always `Allow`: meshfleet grants, it does not deny.
    pub effect: &'static str,
    /// Trust policies: the service principals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// Actions, e.g. `ec2:DescribeImages`.
    pub action: Vec<&'static str>,
    /// Resources (absent in trust policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Vec<&'static str>>,
    /// `StringLike` conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<BTreeMap<&'static str, BTreeMap<&'static str, &'static str>>>,
}

/// `{"Service": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// Service principals, e.g. `ec2.amazonaws.com`.
    #[serde(rename = "Service")]
    pub service: Vec<&'static str>,
}

fn allow(action: &[&'static str], resource: &[&'static str]) -> Statement {
    Statement {
        effect: "Allow",
        principal: None,
        action: action.to_vec(),
        resource: Some(resource.to_vec()),
        condition: None,
    }
}

// --- permissions -------------------------------------------------------------------------
// The action lists below are the subsets of CAPA's default stack
// (cluster-api-provider-aws:`cmd/clusterawsadm/cloudformation/bootstrap/fixtures/default.yaml`
// @v2.11.1) that a meshfleet fleet exercises; see the module comment for what is left out.

/// EC2 calls of CAPA's network, security-group, instance and launch-template reconcilers.
const CONTROLLERS_EC2: &[&str] = &[
    "ec2:AllocateAddress",
    "ec2:AllocateIpamPoolCidr",
    "ec2:AssignIpv6Addresses",
    "ec2:AssignPrivateIpAddresses",
    "ec2:AssociateRouteTable",
    "ec2:AssociateVpcCidrBlock",
    "ec2:AttachInternetGateway",
    "ec2:AttachNetworkInterface",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateCarrierGateway",
    "ec2:CreateEgressOnlyInternetGateway",
    "ec2:CreateInternetGateway",
    "ec2:CreateLaunchTemplate",
    "ec2:CreateLaunchTemplateVersion",
    "ec2:CreateNatGateway",
    "ec2:CreateNetworkInterface",
    "ec2:CreateRoute",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:CreateSubnet",
    "ec2:CreateTags",
    "ec2:CreateVpc",
    "ec2:CreateVpcEndpoint",
    "ec2:DeleteCarrierGateway",
    "ec2:DeleteEgressOnlyInternetGateway",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteLaunchTemplate",
    "ec2:DeleteLaunchTemplateVersions",
    "ec2:DeleteNatGateway",
    "ec2:DeleteRouteTable",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSubnet",
    "ec2:DeleteTags",
    "ec2:DeleteVpc",
    "ec2:DeleteVpcEndpoints",
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeCarrierGateways",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeEgressOnlyInternetGateways",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeIpamPools",
    "ec2:DescribeKeyPairs",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribeNatGateways",
    "ec2:DescribeNetworkInterfaceAttribute",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2:DescribeVpcAttribute",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
    "ec2:DetachInternetGateway",
    "ec2:DetachNetworkInterface",
    "ec2:DisassociateAddress",
    "ec2:DisassociateRouteTable",
    "ec2:DisassociateVpcCidrBlock",
    "ec2:GetSecurityGroupsForVpc",
    "ec2:ModifyInstanceAttribute",
    "ec2:ModifyInstanceMetadataOptions",
    "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:ModifySubnetAttribute",
    "ec2:ModifyVpcAttribute",
    "ec2:ModifyVpcEndpoint",
    "ec2:ReleaseAddress",
    "ec2:ReplaceRoute",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
    "ec2:UnassignPrivateIpAddresses",
    "tag:GetResources",
];

/// ELB calls of CAPA's control-plane load-balancer reconciler (the fleet's NLB).
const CONTROLLERS_ELB: &[&str] = &[
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
    "elasticloadbalancing:ConfigureHealthCheck",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:RemoveTags",
    "elasticloadbalancing:SetSecurityGroups",
    "elasticloadbalancing:SetSubnets",
];

/// The ELB service-linked role, which the first load balancer of an account needs.
const ELB_SERVICE_LINKED_ROLE: &str = "arn:*:iam::*:role/aws-service-role/elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing";

/// Only CAPA's own roles may be passed to instances.
const CAPA_ROLES: &str = "arn:*:iam::*:role/*.cluster-api-provider-aws.sigs.k8s.io";

/// What a cloud controller manager on the control plane calls (volumes, routes, load
/// balancers for Services).
const CONTROL_PLANE_ACTIONS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeTags",
    "ec2:AssignIpv6Addresses",
    "ec2:AttachVolume",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateRoute",
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:CreateVolume",
    "ec2:DeleteRoute",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteVolume",
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVolumes",
    "ec2:DescribeVpcs",
    "ec2:DetachVolume",
    "ec2:ModifyInstanceAttribute",
    "ec2:ModifyVolume",
    "ec2:RevokeSecurityGroupIngress",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
    "elasticloadbalancing:AttachLoadBalancerToSubnets",
    "elasticloadbalancing:ConfigureHealthCheck",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateLoadBalancerListeners",
    "elasticloadbalancing:CreateLoadBalancerPolicy",
    "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteLoadBalancerListeners",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancerPolicies",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DetachLoadBalancerFromSubnets",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer",
    "elasticloadbalancing:SetLoadBalancerPoliciesOfListener",
    "elasticloadbalancing:SetSecurityGroups",
    "kms:DescribeKey",
];

/// What every node calls: its own metadata and tags, and pulls from private ECR registries.
const NODES_ACTIONS: &[&str] = &[
    "ec2:AssignIpv6Addresses",
    "ec2:CreateTags",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeRegions",
    "ec2:DescribeTags",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeRepositories",
    "ecr:GetAuthorizationToken",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:ListImages",
];

fn logical(kind: &str, identity: &str) -> String {
    let camel: String = identity
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("AWSIAM{kind}{camel}")
}

fn full_name(identity: &str) -> String {
    format!("{identity}{NAME_SUFFIX}")
}

fn ec2_trust() -> PolicyDocument {
    PolicyDocument {
        version: "2012-10-17",
        statement: vec![Statement {
            effect: "Allow",
            principal: Some(Principal {
                service: vec!["ec2.amazonaws.com"],
            }),
            action: vec!["sts:AssumeRole"],
            resource: None,
            condition: None,
        }],
    }
}

fn role_refs(identities: &[&str]) -> Vec<Ref> {
    identities
        .iter()
        .map(|i| Ref {
            target: logical("Role", i),
        })
        .collect()
}

fn policy(
    identity: &str,
    description: &str,
    statement: Vec<Statement>,
    roles: &[&str],
) -> Resource {
    Resource::ManagedPolicy(ManagedPolicyProps {
        managed_policy_name: full_name(identity),
        description: description.to_owned(),
        policy_document: PolicyDocument {
            version: "2012-10-17",
            statement,
        },
        roles: role_refs(roles),
    })
}

/// The template of CAPA's IAM stack. It is account-wide (IAM names are global), so it names no
/// fleet: every fleet of an account converges the same stack.
pub fn capa_iam() -> Template {
    let mut resources = BTreeMap::new();
    for id in IDENTITIES {
        resources.insert(
            logical("Role", id),
            Resource::Role(RoleProps {
                role_name: full_name(id),
                assume_role_policy_document: ec2_trust(),
            }),
        );
        resources.insert(
            logical("InstanceProfile", id),
            Resource::InstanceProfile(InstanceProfileProps {
                instance_profile_name: full_name(id),
                roles: role_refs(&[id]),
            }),
        );
    }
    let controllers = vec![
        allow(CONTROLLERS_EC2, &["*"]),
        allow(CONTROLLERS_ELB, &["*"]),
        Statement {
            condition: Some(BTreeMap::from([(
                "StringLike",
                BTreeMap::from([("iam:AWSServiceName", "elasticloadbalancing.amazonaws.com")]),
            )])),
            ..allow(&["iam:CreateServiceLinkedRole"], &[ELB_SERVICE_LINKED_ROLE])
        },
        allow(&["iam:PassRole"], &[CAPA_ROLES]),
    ];
    // CAPA attaches the controllers policy to the control plane too, so a management cluster
    // pivoted onto a workload cluster keeps working (default.yaml@v2.11.1 does the same).
    resources.insert(
        logical("ManagedPolicy", "controllers"),
        policy(
            "controllers",
            "Cluster API Provider AWS controllers, as used by meshfleet",
            controllers,
            &["controllers", "control-plane"],
        ),
    );
    resources.insert(
        logical("ManagedPolicy", "control-plane"),
        policy(
            "control-plane",
            "Cloud provider on meshfleet control-plane nodes",
            vec![
                allow(CONTROL_PLANE_ACTIONS, &["*"]),
                Statement {
                    condition: Some(BTreeMap::from([(
                        "StringLike",
                        BTreeMap::from([(
                            "iam:AWSServiceName",
                            "elasticloadbalancing.amazonaws.com",
                        )]),
                    )])),
                    ..allow(&["iam:CreateServiceLinkedRole"], &[ELB_SERVICE_LINKED_ROLE])
                },
            ],
            &["control-plane"],
        ),
    );
    resources.insert(
        logical("ManagedPolicy", "nodes"),
        policy(
            "nodes",
            "meshfleet nodes",
            vec![allow(NODES_ACTIONS, &["*"])],
            &["control-plane", "nodes"],
        ),
    );
    Template {
        format_version: "2010-09-09",
        description: "IAM for Cluster API Provider AWS, managed by meshfleet; converge with `meshfleet aws setup`".to_owned(),
        resources,
    }
}

impl Template {
    /// The template body as CloudFormation reads it (pretty JSON, stable order).
    pub fn body(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Names of the instance profiles the template creates.
    pub fn instance_profiles(&self) -> Vec<&str> {
        self.resources
            .values()
            .filter(|r| matches!(r, Resource::InstanceProfile(_)))
            .map(Resource::physical_name)
            .collect()
    }

    /// Every action granted, for the least-privilege checks.
    pub fn granted_actions(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for r in self.resources.values() {
            if let Resource::ManagedPolicy(p) = r {
                for s in &p.policy_document.statement {
                    out.extend(s.action.iter().copied());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}
