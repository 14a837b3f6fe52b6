//! A fake of the AWS APIs `meshfleet aws setup` calls, served over plain HTTP on its own
//! listener in the simulator's process, and the state the simulated CAPA reads.
//!
//! One base URL (written to `<kubeconfig>.endpoints.json` as `"aws": "http://127.0.0.1:PORT"`)
//! serves every service and region: the official SDK clients, pointed at it with
//! `endpoint_url`, POST the query protocol (`Action=…&Version=…`, form-encoded), and the SigV4
//! credential scope of the `Authorization` header (`…/<date>/<region>/<service>/aws4_request`)
//! says which service and region. Signatures are not checked.
//!
//! | service | actions |
//! |---|---|
//! | STS | `GetCallerIdentity` (account `123456789012`, as moto) |
//! | EC2 | `DescribeRegions` (`AllRegions`), `DescribeImages` (`Owner.N`, `Filter.N.Name=name`, `ImageId.N`), `DescribeKeyPairs` (`KeyName.N`: `InvalidKeyPair.NotFound` for a missing name), `ImportKeyPair` |
//! | EC2 (interconnects, [`ec2net`]) | `DescribeVpcs` (CAPA's, `tag-key` filter), `CreateTransitGateway`, `DescribeTransitGateways`, `CreateCustomerGateway`, `DescribeCustomerGateways`, `CreateVpnConnection` (on a Transit Gateway), `DescribeVpnConnections` (with `tunnelOptionSet`); CAPA's `DescribeSubnets`/`DescribeRouteTables`, `CreateRoute`/`ReplaceRoute`, Transit Gateway VPC and peering attachments (`Create…`, `Describe…`, `ModifyTransitGatewayVpcAttachment`, `AcceptTransitGatewayPeeringAttachment`), `CreateTransitGatewayRoute`/`ReplaceTransitGatewayRoute`/`SearchTransitGatewayRoutes`, VPC peering (`Create…`, `Describe…`, `Accept…`) |
//! | CloudFormation | `CreateStack`, `UpdateStack`, `DeleteStack`, `DescribeStacks`, `GetTemplate`, `DescribeStackEvents` |
//!
//! Behaviour, following moto 5.2.5 and the AWS API references: a stack operation stays
//! `*_IN_PROGRESS` for about 300 ms divided by `--speed` (moto completes at once; the real
//! service takes a while, and setup must wait and resume); `DescribeStacks`/`GetTemplate` of a
//! missing stack answer `ValidationError` "Stack with id NAME does not exist"; a second create is
//! `AlreadyExistsException`; an update with the same template is `ValidationError` "No updates
//! are to be performed."; an update of a stack in progress or in `ROLLBACK_COMPLETE` is a
//! `ValidationError`; a template whose IAM resources carry names needs `CAPABILITY_NAMED_IAM`
//! (`InsufficientCapabilitiesException`). Only IAM resources are understood: the instance
//! profiles of stacks in a `*_COMPLETE` state (not `ROLLBACK_COMPLETE`) exist for the simulated
//! CAPA. Opt-in regions (`af-south-1`, `ap-east-1`, `me-south-1`) are `not-opted-in`.
//! With `--state DIR` the state is saved to `DIR/aws.json`.
//!
//! No AMI exists until one is published: the simulator does not know Sidero's catalogue.
//! Admin endpoints (not AWS APIs):
//! - `POST /_sim/aws/seed` `{"images":[{"region":"eu-west-1","name":"talos-v1.13.9-eu-west-1-amd64","owner":"540036508848"}],"keyPairs":[{"region":"eu-west-1","name":"ops"}]}`
//!   (`owner` defaults to Sidero Labs' account); in-process [`Aws::publish_image`],
//!   [`Aws::add_key_pair`].
//! - `GET /_sim/aws/state`: the whole state as JSON.
//!
//! The simulated CAPA asks [`Aws::capa_missing`] why an AWSMachine cannot be launched.

pub mod ec2net;
mod ec2net_api;
mod ec2net_links;
mod query;
mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use server::serve;

/// The account every caller is (moto's default account).
pub const ACCOUNT: &str = "123456789012";

/// Sidero Labs' account, owner of the public Talos AMIs.
pub const TALOS_OWNER: &str = "540036508848";

/// CAPA's AMI owner when `imageLookupOrg` is empty
/// (cluster-api-provider-aws:`pkg/cloud/services/ec2/ami.go`@v2.11.1, `DefaultMachineAMIOwnerID`).
const CAPA_DEFAULT_OWNER: &str = "819546954734";

/// Regions the fake lists; the last three are opt-in regions not enabled for the account.
const REGIONS: [&str; 14] = [
    "ap-northeast-1",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-2",
];
const OPT_IN_REGIONS: [&str; 3] = ["af-south-1", "ap-east-1", "me-south-1"];

/// Everything the fake knows, as saved in `aws.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    /// Stacks by `region/name`.
    pub stacks: BTreeMap<String, Stack>,
    /// Published AMIs.
    pub images: Vec<AmiRecord>,
    /// Key pairs as `region/name`.
    pub key_pairs: BTreeSet<String>,
    /// EC2 networking: CAPA's VPCs and the interconnects between them and to GCP.
    pub ec2: ec2net::Ec2Net,
    /// Source of ids.
    pub next_id: u64,
}

/// One CloudFormation stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    /// `arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>`.
    pub id: String,
    /// Current status.
    pub status: String,
    /// Status once the operation settles.
    pub settles_to: String,
    /// Unix ms when it settles.
    pub settles_at: i64,
    /// Current template body.
    pub template: String,
    /// Unix ms of creation.
    pub created: i64,
    /// Events, oldest first: `(logical id, status, reason)`.
    pub events: Vec<(String, String, String)>,
}

/// One AMI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmiRecord {
    /// Region.
    pub region: String,
    /// `ami-…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner account.
    pub owner: String,
    /// `available`, `pending`, ….
    pub state: String,
}

impl State {
    /// Settle operations whose time has come; true when one did.
    fn advance(&mut self, now: i64) -> bool {
        let mut changed = false;
        self.stacks.retain(|_, s| {
            if s.status.ends_with("_IN_PROGRESS") && now >= s.settles_at {
                s.status = s.settles_to.clone();
                changed = true;
            }
            s.status != "DELETE_COMPLETE"
        });
        changed
    }

    /// Instance profiles of the usable stacks of any region (IAM is global).
    pub fn instance_profiles(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for s in self.stacks.values() {
            if !s.status.ends_with("_COMPLETE") || s.status == "ROLLBACK_COMPLETE" {
                continue;
            }
            let v: Value = serde_json::from_str(&s.template).unwrap_or(Value::Null);
            for r in v["Resources"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if r["Type"] == "AWS::IAM::InstanceProfile"
                    && let Some(n) = r["Properties"]["InstanceProfileName"].as_str()
                {
                    out.insert(n.to_owned());
                }
            }
        }
        out
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Errors opening the fake.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The file could not be read or parsed.
    #[error("cannot load AWS state `{path}`: {why}; hint: move the file away to start empty")]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        why: String,
    },
}

/// The AWS fake.
pub struct Aws {
    state: Mutex<State>,
    path: Option<PathBuf>,
    dirty: AtomicBool,
    speed: f64,
    url: String,
}

impl Aws {
    /// Open the fake: load `path` when it exists; `url` is the base URL it is served at.
    pub fn open(path: Option<PathBuf>, url: String, speed: f64) -> Result<Self, AwsError> {
        let state = match &path {
            Some(p) if p.exists() => {
                let load = |why: String| AwsError::Load {
                    path: p.clone(),
                    why,
                };
                let text = std::fs::read(p).map_err(|e| load(e.to_string()))?;
                serde_json::from_slice(&text).map_err(|e| load(e.to_string()))?
            }
            _ => State::default(),
        };
        Ok(Self {
            state: Mutex::new(state),
            path,
            dirty: AtomicBool::new(false),
            speed: if speed > 0.0 { speed } else { 1.0 },
            url,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long a stack operation takes.
    fn op_delay_ms(&self) -> i64 {
        Duration::from_millis(300).div_f64(self.speed).as_millis() as i64
    }

    /// Run `f` on the state after settling due operations, and mark it to be saved.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.advance(crate::gcp::now_ms());
        let out = f(&mut st);
        self.dirty.store(true, Ordering::Relaxed);
        out
    }

    /// Read the state after settling due operations.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.advance(crate::gcp::now_ms()) {
            self.dirty.store(true, Ordering::Relaxed);
        }
        f(&st)
    }

    /// Save the state if it changed (no-op without a path).
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(p) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_vec_pretty(&*st).unwrap_or_default()
        };
        crate::store::write_atomic(p, &bytes).inspect_err(|_| {
            self.dirty.store(true, Ordering::Relaxed);
        })
    }

    /// Publish an available AMI (as Sidero's uploader would); returns its id. Publishing the
    /// same region, owner and name again returns the existing id.
    pub fn publish_image(&self, region: &str, owner: &str, name: &str) -> String {
        self.with_state(|st| {
            if let Some(i) = st
                .images
                .iter()
                .find(|i| i.region == region && i.owner == owner && i.name == name)
            {
                return i.id.clone();
            }
            let id = format!("ami-{:017x}", 0x5e0_0000 + st.id());
            st.images.push(AmiRecord {
                region: region.to_owned(),
                id: id.clone(),
                name: name.to_owned(),
                owner: owner.to_owned(),
                state: "available".to_owned(),
            });
            id
        })
    }

    /// The VPC the simulated CAPA creates for an AWSCluster (`cluster` is `namespace/name`)
    /// once its network is provisioned; returns its id. Idempotent: CAPA finds its VPC by its
    /// cluster tag and creates one only when none carries it
    /// (cluster-api-provider-aws:`pkg/cloud/services/network/vpc.go`@v2.11.1, `reconcileVPC`).
    pub fn capa_vpc(&self, region: &str, cluster: &str, cidr: &str) -> String {
        if let Some(id) = self.read(|st| st.ec2.vpc_of(cluster).map(|(id, _)| id.clone())) {
            return id;
        }
        self.with_state(|st| {
            if let Some((id, _)) = st.ec2.vpc_of(cluster) {
                return id.clone();
            }
            let id = format!("vpc-{:017x}", 0x7c0_0000 + st.id());
            st.ec2.vpcs.insert(
                id.clone(),
                ec2net::Vpc {
                    region: region.to_owned(),
                    cidr: cidr.to_owned(),
                    cluster: cluster.to_owned(),
                    routes: Vec::new(),
                },
            );
            id
        })
    }

    /// Import a key pair in a region.
    pub fn add_key_pair(&self, region: &str, name: &str) {
        self.with_state(|st| st.key_pairs.insert(format!("{region}/{name}")));
    }

    /// The state as JSON.
    pub fn snapshot(&self) -> Value {
        self.read(|st| serde_json::to_value(st).unwrap_or(Value::Null))
    }

    /// Why the simulated CAPA cannot launch an AWSMachine, or `None` when it can: the AMI its
    /// AWSMachineTemplate looks up (`imageLookupOrg` owner and the literal `imageLookupFormat`
    /// name, in the cluster's region) must exist and be available, and its
    /// `iamInstanceProfile` must exist. Real CAPA fails the same way: it resolves the AMI with
    /// DescribeImages filtered by `owner-id`, `name`, architecture and `state=available`, and
    /// fails with "found no AMIs with name …" when none matches
    /// (kubernetes-sigs/cluster-api-provider-aws:`pkg/cloud/services/ec2/ami.go`@v2.11.1,
    /// `DefaultAMILookup`); RunInstances gets the instance profile by name
    /// (`pkg/cloud/services/ec2/instances.go`@v2.11.1, `IamInstanceProfileSpecification`),
    /// which EC2 rejects when it does not exist.
    pub fn capa_missing(
        &self,
        region: &str,
        ami_owner: &str,
        ami_name: &str,
        instance_profile: Option<&str>,
    ) -> Option<String> {
        let ami_ok = self.read(|st| {
            st.images.iter().any(|i| {
                i.region == region
                    && i.owner == ami_owner
                    && i.name == ami_name
                    && i.state == "available"
            })
        });
        if !ami_ok {
            return Some(format!(
                "found no AMIs with name \"{ami_name}\", architecture \"x86_64\", ownerID \"{ami_owner}\" in {region} (`meshfleet aws setup` checks the Talos AMI)"
            ));
        }
        self.profile_missing(instance_profile.filter(|p| !p.is_empty()))
    }

    /// [`Aws::capa_missing`] for an AWSMachine's (or AWSMachineTemplate's `template`) `spec` in
    /// the AWSCluster's `region`: `ami.id` when set, else the owner `imageLookupOrg` (CAPA's
    /// default owner when empty) and the `imageLookupFormat` name, which must be literal (the
    /// fake does not expand CAPA's `{{.K8sVersion}}` templates: such a spec is not checked for
    /// its AMI); `iamInstanceProfile` when set (cluster-api-provider-aws:
    /// `api/v1beta2/awsmachine_types.go`@v2.11.1 names these fields).
    pub fn capa_machine_missing(&self, region: &str, spec: &Value) -> Option<String> {
        let field = |p: &str| {
            spec.pointer(p)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let profile = field("/iamInstanceProfile");
        if let Some(id) = field("/ami/id") {
            let found = self.read(|st| {
                st.images
                    .iter()
                    .any(|i| i.region == region && i.id == id && i.state == "available")
            });
            if !found {
                return Some(format!(
                    "InvalidAMIID.NotFound: The image id '[{id}]' does not exist in {region}"
                ));
            }
            return self.profile_missing(profile);
        }
        match field("/imageLookupFormat") {
            Some(name) if !name.contains("{{") => self.capa_missing(
                region,
                field("/imageLookupOrg").unwrap_or(CAPA_DEFAULT_OWNER),
                name,
                profile,
            ),
            _ => self.profile_missing(profile),
        }
    }

    fn profile_missing(&self, profile: Option<&str>) -> Option<String> {
        let p = profile?;
        if self.read(|st| st.instance_profiles().contains(p)) {
            return None;
        }
        Some(format!(
            "InvalidParameterValue: Value ({p}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name (run `meshfleet aws setup` to create CAPA's IAM stack)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TEMPLATE: &str = r#"{"Resources":{"P":{"Type":"AWS::IAM::InstanceProfile","Properties":{"InstanceProfileName":"nodes.cluster-api-provider-aws.sigs.k8s.io"}}}}"#;

    fn put_stack(aws: &Aws, status: &str) {
        aws.with_state(|st| {
            st.stacks.insert(
                "eu-west-1/s".to_owned(),
                Stack {
                    id: "arn".to_owned(),
                    status: status.to_owned(),
                    settles_to: status.to_owned(),
                    settles_at: 0,
                    template: TEMPLATE.to_owned(),
                    created: 0,
                    events: Vec::new(),
                },
            )
        });
    }

    #[test]
    fn capa_needs_the_ami_and_the_instance_profile() {
        let aws = Aws::open(None, "http://x".to_owned(), 1.0).unwrap();
        let spec = json!({
            "imageLookupOrg": TALOS_OWNER,
            "imageLookupFormat": "talos-v1.13.9-eu-west-1-amd64",
            "iamInstanceProfile": "nodes.cluster-api-provider-aws.sigs.k8s.io",
        });
        let why = aws.capa_machine_missing("eu-west-1", &spec).unwrap();
        assert!(
            why.starts_with("found no AMIs with name \"talos-v1.13.9-eu-west-1-amd64\""),
            "{why}"
        );
        aws.publish_image("eu-west-1", TALOS_OWNER, "talos-v1.13.9-eu-west-1-amd64");
        // Published in another region only: still missing here.
        assert!(aws.capa_machine_missing("us-east-1", &spec).is_some());
        let why = aws.capa_machine_missing("eu-west-1", &spec).unwrap();
        assert!(why.contains("Invalid IAM Instance Profile"), "{why}");
        // A rolled-back stack holds no instance profile.
        put_stack(&aws, "ROLLBACK_COMPLETE");
        assert!(aws.capa_machine_missing("eu-west-1", &spec).is_some());
        put_stack(&aws, "CREATE_COMPLETE");
        assert_eq!(aws.capa_machine_missing("eu-west-1", &spec), None);
        // An explicit AMI id.
        let by_id = json!({"ami": {"id": "ami-404"}});
        assert!(
            aws.capa_machine_missing("eu-west-1", &by_id)
                .unwrap()
                .contains("InvalidAMIID.NotFound")
        );
    }
}
