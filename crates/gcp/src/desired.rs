//! The pure part: request bodies from the prerequisites, and the decision per resource
//! (create, update or unchanged) given what exists. No network, no clock.

use meshfleet_render::{GcpFirewallRule, GcpPrerequisites, GcpRouter, GcpSubnetwork};
use serde_json::{Value, json};

use crate::error::SetupError;

/// The image family every Talos image meshfleet creates belongs to.
pub const IMAGE_FAMILY: &str = "talos";

/// What to do with one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Diff {
    /// Absent: insert this body.
    Create(Value),
    /// Present but a field meshfleet owns differs: send this (patch) body.
    Update {
        /// The patch body.
        body: Value,
        /// What differs, for the report.
        detail: String,
    },
    /// Present as wanted.
    Unchanged,
}

/// `capg-controller@{project}.iam.gserviceaccount.com`.
pub fn service_account_email(p: &GcpPrerequisites) -> String {
    format!(
        "{}@{}.iam.gserviceaccount.com",
        p.service_account.name, p.project
    )
}

/// The IAM member of CAPG's service account.
pub fn service_account_member(p: &GcpPrerequisites) -> String {
    format!("serviceAccount:{}", service_account_email(p))
}

/// Partial URL of the fleet's network, which Compute accepts wherever a network is referenced.
pub fn network_link(p: &GcpPrerequisites) -> String {
    format!("projects/{}/global/networks/{}", p.project, p.network.name)
}

/// The part of a Compute URL from `projects/` on, so full self-links and partial URLs compare.
fn link_tail(s: &str) -> &str {
    s.find("projects/").map_or(s, |i| &s[i..])
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_str().unwrap_or_default()
}

/// `networks.insert` body: custom mode, global routing.
pub fn network_body(p: &GcpPrerequisites) -> Value {
    json!({
        "name": p.network.name,
        "description": format!("meshfleet: network of fleet {}", p.fleet),
        "autoCreateSubnetworks": p.network.auto_create_subnetworks,
        "routingConfig": { "routingMode": p.network.routing_mode },
    })
}

/// Decide the network.
pub fn diff_network(p: &GcpPrerequisites, have: Option<&Value>) -> Result<Diff, SetupError> {
    let Some(have) = have else {
        return Ok(Diff::Create(network_body(p)));
    };
    let auto = have["autoCreateSubnetworks"].as_bool().unwrap_or(false);
    if auto != p.network.auto_create_subnetworks {
        return Err(SetupError::Immutable {
            kind: "network",
            name: p.network.name.clone(),
            field: "autoCreateSubnetworks",
            have: auto.to_string(),
            want: p.network.auto_create_subnetworks.to_string(),
            hint: "an auto-mode network has a subnetwork in every region that may overlap the plan; set `spec.providers.gcp.network` to a new name, or convert it (gcloud compute networks update NAME --switch-to-custom-subnet-mode)",
        });
    }
    let mode = str_at(have, &["routingConfig", "routingMode"]);
    if mode != p.network.routing_mode {
        return Ok(Diff::Update {
            body: json!({ "routingConfig": { "routingMode": p.network.routing_mode } }),
            detail: format!("routingMode {mode} -> {}", p.network.routing_mode),
        });
    }
    Ok(Diff::Unchanged)
}

/// `subnetworks.insert` body.
pub fn subnetwork_body(p: &GcpPrerequisites, s: &GcpSubnetwork) -> Value {
    json!({
        "name": s.name,
        "description": format!("meshfleet: nodes of cluster {}", s.cluster),
        "network": network_link(p),
        "region": s.region,
        "ipCidrRange": s.ip_cidr_range,
        "privateIpGoogleAccess": s.private_ip_google_access,
    })
}

const SUBNET_HINT: &str = "the subnetwork was made for another plan: restore the `meshfleet.lock` it was planned with, or delete it (gcloud compute networks subnets delete NAME --region REGION) when no machine uses it, then re-run";

/// Decide a subnetwork. Its range and network are immutable; Private Google Access is patched.
pub fn diff_subnetwork(
    p: &GcpPrerequisites,
    s: &GcpSubnetwork,
    have: Option<&Value>,
) -> Result<Diff, SetupError> {
    let Some(have) = have else {
        return Ok(Diff::Create(subnetwork_body(p, s)));
    };
    let range = str_at(have, &["ipCidrRange"]);
    if range != s.ip_cidr_range {
        return Err(SetupError::Immutable {
            kind: "subnetwork",
            name: s.name.clone(),
            field: "ipCidrRange",
            have: range.to_owned(),
            want: s.ip_cidr_range.clone(),
            hint: SUBNET_HINT,
        });
    }
    let net = link_tail(str_at(have, &["network"]));
    if net != network_link(p) {
        return Err(SetupError::Immutable {
            kind: "subnetwork",
            name: s.name.clone(),
            field: "network",
            have: net.to_owned(),
            want: network_link(p),
            hint: SUBNET_HINT,
        });
    }
    let pga = have["privateIpGoogleAccess"].as_bool().unwrap_or(false);
    if pga != s.private_ip_google_access {
        return Ok(Diff::Update {
            body: json!({ "privateIpGoogleAccess": s.private_ip_google_access }),
            detail: format!(
                "privateIpGoogleAccess {pga} -> {}",
                s.private_ip_google_access
            ),
        });
    }
    Ok(Diff::Unchanged)
}

fn nat_body(r: &GcpRouter) -> Value {
    json!({
        "name": r.nat.name,
        "natIpAllocateOption": r.nat.nat_ip_allocate_option,
        "sourceSubnetworkIpRangesToNat": r.nat.source_subnetwork_ip_ranges_to_nat,
    })
}

/// What a create would set, in one line for the step report (a dry run shows it before
/// anything is written): a firewall rule's direction, protocols and ports, sources and targets;
/// a router's Cloud NAT; a subnetwork's range; the network's mode; the image's source.
pub fn describe(kind: &str, body: &Value) -> String {
    let list = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    match kind {
        "firewall" => {
            let allowed: Vec<String> = body["allowed"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let proto = a["IPProtocol"].as_str().unwrap_or_default();
                    match list(&a["ports"]) {
                        ports if ports.is_empty() => proto.to_owned(),
                        ports => format!("{proto}:{ports}"),
                    }
                })
                .collect();
            let targets = match list(&body["targetTags"]) {
                t if t.is_empty() => "every instance of the network".to_owned(),
                t => format!("tags {t}"),
            };
            format!(
                "{} allow {} from {} to {targets}",
                body["direction"].as_str().unwrap_or("INGRESS"),
                allowed.join(" "),
                list(&body["sourceRanges"])
            )
        }
        "router" => body["nats"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                format!(
                    "Cloud NAT `{}` ({} addresses, {})",
                    n["name"].as_str().unwrap_or_default(),
                    n["natIpAllocateOption"].as_str().unwrap_or_default(),
                    n["sourceSubnetworkIpRangesToNat"]
                        .as_str()
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        "subnetwork" => format!(
            "{} in {}{}",
            body["ipCidrRange"].as_str().unwrap_or_default(),
            body["region"].as_str().unwrap_or_default(),
            if body["privateIpGoogleAccess"] == true {
                ", Private Google Access"
            } else {
                ""
            }
        ),
        "network" => format!(
            "{} subnets, {} routing",
            if body["autoCreateSubnetworks"] == true {
                "auto-mode"
            } else {
                "custom"
            },
            body["routingConfig"]["routingMode"]
                .as_str()
                .unwrap_or_default()
        ),
        "image" => format!(
            "{} from {}",
            body["architecture"].as_str().unwrap_or_default(),
            body["rawDisk"]["source"].as_str().unwrap_or_default()
        ),
        _ => String::new(),
    }
}

/// `routers.insert` body: the Cloud Router carrying the region's Cloud NAT.
pub fn router_body(p: &GcpPrerequisites, r: &GcpRouter) -> Value {
    json!({
        "name": r.name,
        "description": format!("meshfleet: Cloud NAT for {} in {}", p.network.name, r.region),
        "network": network_link(p),
        "region": r.region,
        "nats": [nat_body(r)],
    })
}

/// Decide a router. A missing or different NAT of ours is patched in; other NATs stay.
pub fn diff_router(
    p: &GcpPrerequisites,
    r: &GcpRouter,
    have: Option<&Value>,
) -> Result<Diff, SetupError> {
    let Some(have) = have else {
        return Ok(Diff::Create(router_body(p, r)));
    };
    let net = link_tail(str_at(have, &["network"]));
    if net != network_link(p) {
        return Err(SetupError::Immutable {
            kind: "router",
            name: r.name.clone(),
            field: "network",
            have: net.to_owned(),
            want: network_link(p),
            hint: "a router with this name serves another network; delete it (gcloud compute routers delete NAME --region REGION) or rename `spec.providers.gcp.network`",
        });
    }
    let nats: Vec<Value> = have["nats"].as_array().cloned().unwrap_or_default();
    let want = nat_body(r);
    let ours = nats.iter().find(|n| n["name"] == want["name"]);
    let same = ours.is_some_and(|n| {
        n["natIpAllocateOption"] == want["natIpAllocateOption"]
            && n["sourceSubnetworkIpRangesToNat"] == want["sourceSubnetworkIpRangesToNat"]
    });
    if same {
        return Ok(Diff::Unchanged);
    }
    let detail = if ours.is_some() {
        format!("NAT {} settings differ", r.nat.name)
    } else {
        format!("NAT {} missing", r.nat.name)
    };
    let mut merged: Vec<Value> = nats
        .into_iter()
        .filter(|n| n["name"] != want["name"])
        .collect();
    merged.push(want);
    Ok(Diff::Update {
        body: json!({ "nats": merged }),
        detail,
    })
}

/// `firewalls.insert` body.
pub fn firewall_body(p: &GcpPrerequisites, f: &GcpFirewallRule) -> Value {
    json!({
        "name": f.name,
        "description": f.description,
        "network": network_link(p),
        "direction": f.direction,
        "priority": 1000,
        "sourceRanges": f.source_ranges,
        "targetTags": f.target_tags,
        "allowed": f.allowed.iter().map(|a| {
            let mut v = json!({ "IPProtocol": a.ip_protocol.to_ascii_lowercase() });
            if !a.ports.is_empty() {
                v["ports"] = json!(a.ports);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn allowed_key(v: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["IPProtocol"]
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                        sorted_strings(&x["ports"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Decide a firewall rule: source ranges, target tags and allowed protocols are patched;
/// direction and network cannot change.
pub fn diff_firewall(
    p: &GcpPrerequisites,
    f: &GcpFirewallRule,
    have: Option<&Value>,
) -> Result<Diff, SetupError> {
    let want = firewall_body(p, f);
    let Some(have) = have else {
        return Ok(Diff::Create(want));
    };
    let dir = str_at(have, &["direction"]);
    if !dir.is_empty() && dir != f.direction {
        return Err(SetupError::Immutable {
            kind: "firewall",
            name: f.name.clone(),
            field: "direction",
            have: dir.to_owned(),
            want: f.direction.to_owned(),
            hint: "delete the rule (gcloud compute firewall-rules delete NAME) and re-run",
        });
    }
    let net = link_tail(str_at(have, &["network"]));
    if net != network_link(p) {
        return Err(SetupError::Immutable {
            kind: "firewall",
            name: f.name.clone(),
            field: "network",
            have: net.to_owned(),
            want: network_link(p),
            hint: "firewall names are per project: delete the rule (gcloud compute firewall-rules delete NAME) and re-run",
        });
    }
    let mut diffs = Vec::new();
    if sorted_strings(&have["sourceRanges"]) != sorted_strings(&want["sourceRanges"]) {
        diffs.push("sourceRanges");
    }
    if sorted_strings(&have["targetTags"]) != sorted_strings(&want["targetTags"]) {
        diffs.push("targetTags");
    }
    if allowed_key(&have["allowed"]) != allowed_key(&want["allowed"]) {
        diffs.push("allowed");
    }
    if diffs.is_empty() {
        return Ok(Diff::Unchanged);
    }
    Ok(Diff::Update {
        body: json!({
            "description": want["description"],
            "sourceRanges": want["sourceRanges"],
            "targetTags": want["targetTags"],
            "allowed": want["allowed"],
        }),
        detail: format!("{} differ", diffs.join(", ")),
    })
}

/// The public URL of an object, the form `images.insert` takes for `rawDisk.source`.
pub fn object_url(bucket: &str, object: &str) -> String {
    format!("https://storage.googleapis.com/{bucket}/{object}")
}

/// `images.insert` body: the Talos raw disk with the guest features GCE needs for it.
pub fn image_body(p: &GcpPrerequisites, bucket: &str) -> Value {
    json!({
        "name": p.image.name,
        "description": format!("Talos {} for meshfleet fleet {}", p.image.name, p.fleet),
        "family": IMAGE_FAMILY,
        "architecture": p.image.architecture,
        "rawDisk": { "source": object_url(bucket, &p.image.object) },
        "guestOsFeatures": [
            { "type": "VIRTIO_SCSI_MULTIQUEUE" },
            { "type": "UEFI_COMPATIBLE" },
        ],
    })
}

/// Decide the image. Images are immutable; one of another architecture is an error.
pub fn diff_image(
    p: &GcpPrerequisites,
    bucket: &str,
    have: Option<&Value>,
) -> Result<Diff, SetupError> {
    let Some(have) = have else {
        return Ok(Diff::Create(image_body(p, bucket)));
    };
    let arch = str_at(have, &["architecture"]);
    if !arch.is_empty() && arch != p.image.architecture {
        return Err(SetupError::Immutable {
            kind: "image",
            name: p.image.name.clone(),
            field: "architecture",
            have: arch.to_owned(),
            want: p.image.architecture.to_owned(),
            hint: "delete the image (gcloud compute images delete NAME) and re-run",
        });
    }
    Ok(Diff::Unchanged)
}

/// Storage `buckets.insert` body: uniform access, public access prevention enforced.
pub fn bucket_body(bucket: &str, location: &str) -> Value {
    json!({
        "name": bucket,
        "location": location,
        "iamConfiguration": {
            "uniformBucketLevelAccess": { "enabled": true },
            "publicAccessPrevention": "enforced",
        },
        "labels": { "managed-by": "meshfleet" },
    })
}

/// Decide the bucket: uniform access and public access prevention are patched on.
pub fn diff_bucket(bucket: &str, location: &str, have: Option<&Value>) -> Diff {
    let Some(have) = have else {
        return Diff::Create(bucket_body(bucket, location));
    };
    let iam = &have["iamConfiguration"];
    let ubla = iam["uniformBucketLevelAccess"]["enabled"]
        .as_bool()
        .unwrap_or(false);
    let pap = iam["publicAccessPrevention"].as_str().unwrap_or_default();
    if ubla && pap == "enforced" {
        return Diff::Unchanged;
    }
    let mut what = Vec::new();
    if !ubla {
        what.push("uniform bucket-level access off");
    }
    if pap != "enforced" {
        what.push("public access prevention not enforced");
    }
    Diff::Update {
        body: json!({
            "iamConfiguration": {
                "uniformBucketLevelAccess": { "enabled": true },
                "publicAccessPrevention": "enforced",
            }
        }),
        detail: what.join(", "),
    }
}

/// Read-modify-write of a project IAM policy: add `member` to each of `roles` it is not
/// already in (in an unconditional binding), touching nothing else. Returns the roles added
/// and the policy to write (version 3, the read etag kept so a concurrent change is detected);
/// `None` when every role is already held.
pub fn merge_policy(policy: &Value, member: &str, roles: &[&str]) -> Option<(Vec<String>, Value)> {
    let mut out = policy.clone();
    if !out.is_object() {
        out = json!({});
    }
    let mut bindings: Vec<Value> = out["bindings"].as_array().cloned().unwrap_or_default();
    let mut added = Vec::new();
    for role in roles {
        let holds = bindings.iter().any(|b| {
            b["role"] == *role
                && b.get("condition").is_none_or(Value::is_null)
                && b["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == member))
        });
        if holds {
            continue;
        }
        added.push((*role).to_owned());
        let plain = bindings
            .iter_mut()
            .find(|b| b["role"] == *role && b.get("condition").is_none_or(Value::is_null));
        match plain {
            Some(b) => match b["members"].as_array_mut() {
                Some(m) => m.push(json!(member)),
                None => b["members"] = json!([member]),
            },
            None => bindings.push(json!({ "role": role, "members": [member] })),
        }
    }
    if added.is_empty() {
        return None;
    }
    out["bindings"] = Value::Array(bindings);
    // Version 3 so conditional bindings elsewhere in the policy survive the write.
    out["version"] = json!(3);
    Some((added, out))
}
