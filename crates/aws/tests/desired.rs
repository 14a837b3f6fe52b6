//! The pure half: the stack body (golden), least privilege, and every decision.

mod common;

use meshfleet_aws::SetupError;
use meshfleet_aws::api::{Image, RegionInfo, StackInfo};
use meshfleet_aws::desired::{self, StackPlan};
use meshfleet_aws::error::denied_action;
use meshfleet_aws::template;

#[test]
fn stack_request_golden() {
    let p = common::example_prereq();
    let mut req = desired::stack_request(&p);
    assert_eq!(req.stack_name, "cluster-api-provider-aws-sigs-k8s-io");
    let body: serde_json::Value = serde_json::from_str(&req.template_body).expect("JSON body");
    req.template_body = "<template: see stack_template>".to_owned();
    insta::assert_json_snapshot!("stack_request", req);
    insta::assert_json_snapshot!("stack_template", body);
}

#[test]
fn template_is_least_privilege() {
    let t = template::capa_iam();
    let body = t.body();
    assert!(!body.contains("*:*"), "a `*:*` grant");
    assert!(!body.contains("AdministratorAccess"));
    assert!(
        !body.contains("ManagedPolicyArns"),
        "no AWS-managed policies"
    );
    for a in t.granted_actions() {
        let (service, op) = a.split_once(':').expect("service:Action");
        assert!(
            !service.is_empty() && !op.contains('*'),
            "wildcard action {a}"
        );
        assert!(
            !["eks", "secretsmanager", "ssm", "iam:*"].contains(&service),
            "{a}"
        );
    }
    // PassRole and service-linked roles are scoped to resources, never `*`.
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    for (_, r) in v["Resources"].as_object().expect("resources") {
        for s in r["Properties"]["PolicyDocument"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(s["Effect"], "Allow");
            let actions: Vec<&str> = s["Action"]
                .as_array()
                .expect("actions")
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            if actions.iter().any(|a| a.starts_with("iam:")) {
                assert_ne!(
                    s["Resource"],
                    serde_json::json!(["*"]),
                    "IAM action on every resource: {actions:?}"
                );
            }
        }
    }
}

#[test]
fn template_has_what_render_and_capa_name() {
    let p = common::example_prereq();
    let t = template::capa_iam();
    let profiles = t.instance_profiles();
    for want in &p.iam.instance_profiles {
        assert!(profiles.contains(want), "{want} missing from {profiles:?}");
    }
    assert!(profiles.contains(&"controllers.cluster-api-provider-aws.sigs.k8s.io"));
    let roles: Vec<&str> = t
        .resources
        .values()
        .filter(|r| r.type_name() == "AWS::IAM::Role")
        .map(|r| r.physical_name())
        .collect();
    assert_eq!(roles.len(), 3);
    // What CAPA's controllers must be able to do for a meshfleet cluster.
    let granted = t.granted_actions();
    for a in [
        "ec2:RunInstances",
        "ec2:DescribeImages",
        "ec2:DescribeKeyPairs",
        "iam:PassRole",
        "elasticloadbalancing:CreateLoadBalancer",
    ] {
        assert!(granted.contains(&a), "{a} not granted");
    }
}

#[test]
fn stack_plan_by_status() {
    let s = |st: &str| StackInfo {
        status: st.to_owned(),
        reason: String::new(),
    };
    assert_eq!(desired::stack_plan(None), StackPlan::Create);
    assert_eq!(
        desired::stack_plan(Some(&s("DELETE_COMPLETE"))),
        StackPlan::Create
    );
    assert_eq!(
        desired::stack_plan(Some(&s("CREATE_IN_PROGRESS"))),
        StackPlan::Wait
    );
    assert_eq!(
        desired::stack_plan(Some(&s("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"))),
        StackPlan::Wait
    );
    assert_eq!(
        desired::stack_plan(Some(&s("ROLLBACK_COMPLETE"))),
        StackPlan::Recreate
    );
    for ok in [
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
    ] {
        assert_eq!(
            desired::stack_plan(Some(&s(ok))),
            StackPlan::Compare,
            "{ok}"
        );
    }
    assert!(
        matches!(desired::stack_plan(Some(&s("UPDATE_ROLLBACK_FAILED"))), StackPlan::Stuck { hint } if hint.contains("continue-update-rollback"))
    );
    assert!(matches!(
        desired::stack_plan(Some(&s("DELETE_FAILED"))),
        StackPlan::Stuck { .. }
    ));
}

#[test]
fn template_diff_names_what_changes() {
    let t = template::capa_iam();
    assert!(desired::template_diff(&t.body(), &t).is_empty());
    // Formatting and key order do not count.
    let compact =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&t.body()).unwrap())
            .unwrap();
    assert!(desired::template_diff(&compact, &t).is_empty());
    // An older template: the nodes policy differed and an EKS role existed.
    let mut old: serde_json::Value = serde_json::from_str(&t.body()).unwrap();
    old["Resources"]["AWSIAMManagedPolicyNodes"]["Properties"]["PolicyDocument"]["Statement"][0]
        ["Action"] = serde_json::json!(["ec2:DescribeInstances"]);
    old["Resources"]["AWSIAMRoleEKSControlPlane"] = serde_json::json!({"Type": "AWS::IAM::Role", "Properties": {"RoleName": "eks-controlplane.cluster-api-provider-aws.sigs.k8s.io"}});
    let diff = desired::template_diff(&old.to_string(), &t);
    assert_eq!(
        diff,
        [
            "change AWSIAMManagedPolicyNodes (nodes.cluster-api-provider-aws.sigs.k8s.io)",
            "remove AWSIAMRoleEKSControlPlane (eks-controlplane.cluster-api-provider-aws.sigs.k8s.io)",
        ]
    );
    // clusterawsadm's YAML body.
    let d = desired::template_diff("AWSTemplateFormatVersion: 2010-09-09\nResources: {}\n", &t);
    assert_eq!(d.len(), 1);
    assert!(d[0].contains("not meshfleet's"));
}

fn image(id: &str, name: &str, state: &str, arch: &str) -> Image {
    Image {
        id: id.into(),
        name: name.into(),
        architecture: arch.into(),
        state: state.into(),
        owner: common::OWNER.into(),
    }
}

#[test]
fn ami_found_missing_pending() {
    let name = "talos-v1.13.9-eu-west-1-amd64";
    let ok = desired::check_ami(
        "eu-west-1",
        common::OWNER,
        name,
        "amd64",
        &[image("ami-1", name, "available", "x86_64")],
    );
    assert_eq!(ok.unwrap(), "ami-1");
    let e = desired::check_ami("eu-west-1", common::OWNER, name, "amd64", &[]).unwrap_err();
    assert!(
        matches!(&e, SetupError::AmiMissing { region, version, .. } if region == "eu-west-1" && version == "v1.13.9"),
        "{e:?}"
    );
    let msg = e.to_string();
    for part in [
        "eu-west-1",
        "v1.13.9",
        name,
        "540036508848",
        "import-snapshot",
        "register-image",
        "aws-amd64.raw.xz",
    ] {
        assert!(msg.contains(part), "{part} not in {msg}");
    }
    // Another owner's image of the same name does not count.
    let mut foreign = image("ami-2", name, "available", "x86_64");
    foreign.owner = "111111111111".into();
    assert!(desired::check_ami("eu-west-1", common::OWNER, name, "amd64", &[foreign]).is_err());
    let e = desired::check_ami(
        "eu-west-1",
        common::OWNER,
        name,
        "amd64",
        &[image("ami-3", name, "pending", "x86_64")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("wait a few minutes"), "{e}");
    let e = desired::check_ami(
        "eu-west-1",
        common::OWNER,
        name,
        "amd64",
        &[image("ami-4", name, "available", "arm64")],
    )
    .unwrap_err();
    assert!(e.to_string().contains("arm64"), "{e}");
}

#[test]
fn regions_checked() {
    let listed = vec![
        RegionInfo {
            name: "eu-west-1".into(),
            opt_in_status: "opt-in-not-required".into(),
        },
        RegionInfo {
            name: "af-south-1".into(),
            opt_in_status: "not-opted-in".into(),
        },
    ];
    assert_eq!(
        desired::check_region("eu-west-1", &listed).unwrap(),
        "opt-in-not-required"
    );
    let e = desired::check_region("af-south-1", &listed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not enabled") && e.contains("enable-region --region-name af-south-1"),
        "{e}"
    );
    let e = desired::check_region("eu-nowhere-9", &listed)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not an AWS region") && e.contains("eu-west-1"),
        "{e}"
    );
}

#[test]
fn home_region_is_explicit_or_first() {
    let p = common::two_region_prereq();
    assert_eq!(desired::home_region(&p, None), "eu-west-1");
    assert_eq!(desired::home_region(&p, Some("us-west-2")), "us-west-2");
}

#[test]
fn account_wide_reads_go_to_an_enabled_region_of_the_partition() {
    assert_eq!(desired::probe_region("eu-west-1"), "us-east-1");
    assert_eq!(desired::probe_region("mars-north-1"), "us-east-1");
    assert_eq!(desired::probe_region("cn-north-1"), "cn-north-1");
    assert_eq!(desired::probe_region("us-gov-west-1"), "us-gov-west-1");
}

#[test]
fn denied_action_is_read_from_the_message() {
    assert_eq!(
        denied_action(
            "User: arn:aws:iam::1:user/x is not authorized to perform: iam:CreateRole on resource: arn:aws:iam::1:role/nodes"
        ),
        Some("iam:CreateRole")
    );
    assert_eq!(
        denied_action("You are not authorized to perform this operation."),
        None
    );
}
