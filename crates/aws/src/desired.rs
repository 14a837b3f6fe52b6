//! The pure half of `setup`: what should exist (from render's [`AwsPrerequisites`] and
//! meshfleet's [`template`](crate::template)), and each decision taken on what was read. No I/O:
//! unit- and golden-tested.

use std::collections::BTreeSet;

use meshfleet_render::AwsPrerequisites;
use serde_json::Value;

use crate::api::{Image, RegionInfo, StackInfo, StackRequest, StackTag};
use crate::error::{SetupError, region_hint};
use crate::template::{self, Template};

/// The tag meshfleet puts on what it owns.
pub const MANAGED_BY: (&str, &str) = ("meshfleet.io/managed-by", "meshfleet");

/// Where the IAM stack lives: `explicit` (the caller's configured region) or else the fleet's
/// first AWS region. IAM is global; only the stack that holds it is regional.
pub fn home_region(p: &AwsPrerequisites, explicit: Option<&str>) -> String {
    if let Some(r) = explicit.filter(|r| !r.is_empty()) {
        return r.to_owned();
    }
    p.regions
        .iter()
        .map(|r| r.region.clone())
        .min()
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// The region account-wide reads (STS `GetCallerIdentity`, EC2 `DescribeRegions`) are sent
/// to: `us-east-1`, which every account of the commercial partition has enabled, so that a
/// misspelt or disabled fleet region is reported as such instead of failing to resolve
/// `ec2.<region>.amazonaws.com`; the home region itself in the China and GovCloud partitions,
/// whose accounts cannot call `us-east-1`.
pub fn probe_region(home: &str) -> String {
    if home.starts_with("cn-") || home.starts_with("us-gov-") || home.starts_with("us-iso") {
        home.to_owned()
    } else {
        "us-east-1".to_owned()
    }
}

/// The `CreateStack`/`UpdateStack` request of CAPA's IAM stack.
pub fn stack_request(p: &AwsPrerequisites) -> StackRequest {
    StackRequest {
        stack_name: p.iam.cloud_formation_stack.to_owned(),
        template_body: template::capa_iam().body(),
        capabilities: vec!["CAPABILITY_NAMED_IAM"],
        tags: vec![StackTag {
            key: MANAGED_BY.0,
            value: MANAGED_BY.1,
        }],
    }
}

/// What to do with the stack, given `DescribeStacks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackPlan {
    /// No stack: create it.
    Create,
    /// A create that failed and rolled back (`ROLLBACK_COMPLETE`): the only thing
    /// CloudFormation allows is deleting it; it holds no resources, so delete and create.
    Recreate,
    /// An operation is running (an interrupted run, or someone else): wait, then decide again.
    Wait,
    /// A usable stack: compare its template.
    Compare,
    /// A stack stuck in a failed state that needs a person.
    Stuck {
        /// What to do.
        hint: String,
    },
}

/// Decide from the stack's status.
pub fn stack_plan(have: Option<&StackInfo>) -> StackPlan {
    let Some(s) = have else {
        return StackPlan::Create;
    };
    let st = s.status.as_str();
    if st == "DELETE_COMPLETE" {
        return StackPlan::Create;
    }
    if st.ends_with("_IN_PROGRESS") {
        return StackPlan::Wait;
    }
    match st {
        "ROLLBACK_COMPLETE" => StackPlan::Recreate,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE" | "IMPORT_COMPLETE"
        | "IMPORT_ROLLBACK_COMPLETE" => StackPlan::Compare,
        "UPDATE_ROLLBACK_FAILED" => StackPlan::Stuck {
            hint: "finish the rollback (`aws cloudformation continue-update-rollback --stack-name NAME`), then re-run".to_owned(),
        },
        _ => StackPlan::Stuck {
            hint: "inspect the stack's events (`aws cloudformation describe-stack-events --stack-name NAME`), delete it once its resources are safe to remove, then re-run".to_owned(),
        },
    }
}

/// Whether a finished operation ended well: `want` is `CREATE_COMPLETE` or `UPDATE_COMPLETE`.
pub fn ended_well(status: &str, want: &str) -> bool {
    status == want
}

/// The difference between the stack's current template and the wanted one, as lines such as
/// `changed AWSIAMManagedPolicyNodes (nodes.cluster-api-provider-aws.sigs.k8s.io)`. Empty: the
/// same template (compared as JSON values, so whitespace and key order do not count).
pub fn template_diff(have_body: &str, want: &Template) -> Vec<String> {
    let want_v = serde_json::to_value(want).unwrap_or(Value::Null);
    let Ok(have_v) = serde_json::from_str::<Value>(have_body) else {
        // clusterawsadm submits YAML; meshfleet always submits JSON. A YAML (or otherwise
        // foreign) body is replaced by meshfleet's.
        return vec!["the current template is not meshfleet's (not JSON): replaced".to_owned()];
    };
    if have_v == want_v {
        return Vec::new();
    }
    let empty = serde_json::Map::new();
    let have_r = have_v["Resources"].as_object().unwrap_or(&empty);
    let want_r = want_v["Resources"].as_object().unwrap_or(&empty);
    let ids: BTreeSet<&String> = have_r.keys().chain(want_r.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        let name = want
            .resources
            .get(id.as_str())
            .map(|r| r.physical_name().to_owned())
            .or_else(|| {
                have_r[id.as_str()]["Properties"]
                    .as_object()
                    .and_then(|p| p.values().find_map(Value::as_str).map(str::to_owned))
            })
            .unwrap_or_default();
        match (have_r.get(id.as_str()), want_r.get(id.as_str())) {
            (None, Some(_)) => out.push(format!("add {id} ({name})")),
            (Some(_), None) => out.push(format!("remove {id} ({name})")),
            (Some(a), Some(b)) if a != b => out.push(format!("change {id} ({name})")),
            _ => {}
        }
    }
    if out.is_empty() {
        out.push("change the template's description or version".to_owned());
    }
    out
}

/// What a created stack holds, for the report.
pub fn stack_summary(t: &Template) -> String {
    format!(
        "roles, instance profiles and managed policies {}",
        template::IDENTITIES.join(", ")
    ) + &format!(
        " (*{}); instance profiles {}",
        template::NAME_SUFFIX,
        t.instance_profiles().len()
    )
}

/// Check a fleet region against `DescribeRegions`.
pub fn check_region(region: &str, listed: &[RegionInfo]) -> Result<String, SetupError> {
    match listed.iter().find(|r| r.name == region) {
        None => Err(SetupError::Region {
            region: region.to_owned(),
            why: "is not an AWS region EC2 knows".to_owned(),
            hint: format!(
                "use one of {} in the cluster's `region`",
                listed
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
        Some(r) if r.opt_in_status == "not-opted-in" => Err(SetupError::Region {
            region: region.to_owned(),
            why: "is an opt-in region not enabled for this account".to_owned(),
            hint: region_hint(region),
        }),
        Some(r) => Ok(if r.opt_in_status.is_empty() {
            "enabled".to_owned()
        } else {
            r.opt_in_status.clone()
        }),
    }
}

/// EC2's name of a Talos architecture.
pub fn ec2_arch(talos_arch: &str) -> &str {
    match talos_arch {
        "amd64" => "x86_64",
        other => other,
    }
}

/// The Talos version in an AMI name `talos-<version>-<region>-<arch>`.
pub fn ami_version<'a>(name: &'a str, region: &str, arch: &str) -> &'a str {
    name.strip_prefix("talos-")
        .and_then(|n| n.strip_suffix(&format!("-{region}-{arch}")))
        .unwrap_or(name)
}

/// Pick the AMI of a region from `DescribeImages` by owner and name; the detail says which.
pub fn check_ami(
    region: &str,
    owner: &str,
    name: &str,
    arch: &str,
    images: &[Image],
) -> Result<String, SetupError> {
    let mut found: Vec<&Image> = images
        .iter()
        .filter(|i| i.name == name && i.owner == owner)
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let Some(first) = found
        .iter()
        .find(|i| i.state == "available")
        .or(found.first())
    else {
        return Err(SetupError::AmiMissing {
            region: region.to_owned(),
            version: ami_version(name, region, arch).to_owned(),
            name: name.to_owned(),
            owner: owner.to_owned(),
            arch: arch.to_owned(),
        });
    };
    if first.state != "available" {
        return Err(SetupError::AmiUnusable {
            region: region.to_owned(),
            name: name.to_owned(),
            id: first.id.clone(),
            state: first.state.clone(),
            hint: if first.state == "pending" {
                "the image is still being registered: wait a few minutes and re-run"
            } else {
                "the public image cannot be launched: pick another Talos release in `spec.versions.talos`"
            },
        });
    }
    let want_arch = ec2_arch(arch);
    if !first.architecture.is_empty() && first.architecture != want_arch {
        return Err(SetupError::AmiUnusable {
            region: region.to_owned(),
            name: name.to_owned(),
            id: first.id.clone(),
            state: format!("{} (architecture {})", first.state, first.architecture),
            hint: "the image's architecture is not the machines' (x86_64): report the image to Sidero Labs and pick another Talos release",
        });
    }
    Ok(if found.len() > 1 {
        format!(
            "{} ({} images share the name; CAPA takes the newest)",
            first.id,
            found.len()
        )
    } else {
        first.id.clone()
    })
}
