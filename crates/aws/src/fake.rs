//! An in-memory AWS for tests: CloudFormation stacks with real status transitions (a stack
//! stays `*_IN_PROGRESS` for a configurable number of reads), EC2 images and key pairs per
//! region, STS, and an injectable failure per action. Behaviour follows moto 5.2.5 and the AWS
//! API references where they are explicit (CloudFormation `UpdateStack`'s "No updates are to be
//! performed", `AlreadyExistsException` on a duplicate create, `InsufficientCapabilities` for
//! named IAM resources without `CAPABILITY_NAMED_IAM`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use crate::api::{AwsApi, CallerIdentity, Image, RegionInfo, StackInfo, StackRequest};
use crate::error::ApiError;

/// One stack.
#[derive(Debug, Clone)]
pub struct FakeStack {
    /// Current status.
    pub status: String,
    /// Current template body.
    pub template: String,
    /// Reads left before an `*_IN_PROGRESS` status settles.
    pub reads_left: u32,
    /// The status it settles to.
    pub settles_to: String,
    /// Failure reasons recorded (`DescribeStackEvents`).
    pub failures: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    regions: Vec<RegionInfo>,
    stacks: BTreeMap<(String, String), FakeStack>,
    images: Vec<(String, Image)>,
    key_pairs: BTreeSet<(String, String)>,
    fail: HashMap<&'static str, VecDeque<ApiError>>,
    calls: Vec<String>,
    /// Reads an operation stays in progress.
    in_progress_reads: u32,
    /// When set, the next create rolls back with this reason.
    fail_create: Option<String>,
}

/// The in-memory AWS.
#[derive(Debug)]
pub struct FakeAws {
    state: Mutex<State>,
}

impl Default for FakeAws {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeAws {
    /// An account with the usual commercial regions (plus one opt-in region not enabled,
    /// `af-south-1`) and nothing else.
    pub fn new() -> Self {
        let mut regions: Vec<RegionInfo> = [
            "eu-west-1",
            "eu-west-2",
            "eu-central-1",
            "us-east-1",
            "us-east-2",
            "us-west-2",
            "ap-southeast-1",
        ]
        .iter()
        .map(|r| RegionInfo {
            name: (*r).to_owned(),
            opt_in_status: "opt-in-not-required".to_owned(),
        })
        .collect();
        regions.push(RegionInfo {
            name: "af-south-1".to_owned(),
            opt_in_status: "not-opted-in".to_owned(),
        });
        Self {
            state: Mutex::new(State {
                regions,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock already failed; the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publish an AMI in a region.
    pub fn add_image(&self, region: &str, owner: &str, name: &str, state: &str) -> String {
        let mut s = self.lock();
        let id = format!("ami-{:017x}", s.images.len() + 1);
        s.images.push((
            region.to_owned(),
            Image {
                id: id.clone(),
                name: name.to_owned(),
                architecture: "x86_64".to_owned(),
                state: state.to_owned(),
                owner: owner.to_owned(),
            },
        ));
        id
    }

    /// Import a key pair in a region.
    pub fn add_key_pair(&self, region: &str, name: &str) {
        self.lock()
            .key_pairs
            .insert((region.to_owned(), name.to_owned()));
    }

    /// Make operations stay `*_IN_PROGRESS` for `reads` `DescribeStacks` calls.
    pub fn set_in_progress_reads(&self, reads: u32) {
        self.lock().in_progress_reads = reads;
    }

    /// Make the next create roll back with `reason` (as a missing IAM permission would).
    pub fn fail_next_create(&self, reason: &str) {
        self.lock().fail_create = Some(reason.to_owned());
    }

    /// Fail the next call of `action` (e.g. `cloudformation:CreateStack`) with `e`.
    pub fn fail_next(&self, action: &'static str, e: ApiError) {
        self.lock().fail.entry(action).or_default().push_back(e);
    }

    /// Put a stack in place directly (e.g. one `clusterawsadm` made).
    pub fn put_stack(&self, region: &str, name: &str, status: &str, template: &str) {
        self.lock().stacks.insert(
            (region.to_owned(), name.to_owned()),
            FakeStack {
                status: status.to_owned(),
                template: template.to_owned(),
                reads_left: 0,
                settles_to: status.to_owned(),
                failures: Vec::new(),
            },
        );
    }

    /// Let an in-progress stack settle after `reads` more `DescribeStacks` calls.
    pub fn put_stack_reads_left(&self, region: &str, name: &str, reads: u32) {
        if let Some(st) = self
            .lock()
            .stacks
            .get_mut(&(region.to_owned(), name.to_owned()))
        {
            st.reads_left = reads;
        }
    }

    /// A stack's state.
    pub fn stack(&self, region: &str, name: &str) -> Option<FakeStack> {
        self.lock()
            .stacks
            .get(&(region.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every call so far, as `action region`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The calls that change something (creates, updates, deletes).
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| {
                ["CreateStack", "UpdateStack", "DeleteStack"]
                    .iter()
                    .any(|w| c.contains(w))
            })
            .collect()
    }

    /// Instance profiles of the completed stacks (what the simulator's CAPA would find).
    pub fn instance_profiles(&self) -> Vec<String> {
        let s = self.lock();
        let mut out = Vec::new();
        for st in s.stacks.values() {
            if !st.status.ends_with("_COMPLETE")
                || st.status == "ROLLBACK_COMPLETE"
                || st.status == "DELETE_COMPLETE"
            {
                continue;
            }
            let v: Value = serde_json::from_str(&st.template).unwrap_or(Value::Null);
            if let Some(res) = v["Resources"].as_object() {
                for r in res.values() {
                    if r["Type"] == "AWS::IAM::InstanceProfile"
                        && let Some(n) = r["Properties"]["InstanceProfileName"].as_str()
                    {
                        out.push(n.to_owned());
                    }
                }
            }
        }
        out
    }

    fn enter(
        &self,
        action: &'static str,
        region: &str,
    ) -> Result<std::sync::MutexGuard<'_, State>, ApiError> {
        let mut s = self.lock();
        s.calls
            .push(format!("{action} {region}").trim_end().to_owned());
        if let Some(e) = s.fail.get_mut(action).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        Ok(s)
    }
}

fn validation(action: &'static str, message: String) -> ApiError {
    ApiError::service(action, 400, "ValidationError", message)
}

/// Named IAM resources need `CAPABILITY_NAMED_IAM` (CloudFormation API reference, CreateStack
/// `Capabilities`).
fn check_capabilities(action: &'static str, req: &StackRequest) -> Result<(), ApiError> {
    let v: Value = serde_json::from_str(&req.template_body)
        .map_err(|e| validation(action, format!("Template format error: {e}")))?;
    let Some(res) = v["Resources"].as_object() else {
        return Err(validation(
            action,
            "Template format error: At least one Resources member must be defined.".to_owned(),
        ));
    };
    let named = res.values().any(|r| {
        r["Type"]
            .as_str()
            .is_some_and(|t| t.starts_with("AWS::IAM::"))
            && r["Properties"]
                .as_object()
                .is_some_and(|p| p.keys().any(|k| k.ends_with("Name")))
    });
    if named && !req.capabilities.contains(&"CAPABILITY_NAMED_IAM") {
        return Err(ApiError::service(
            action,
            400,
            "InsufficientCapabilitiesException",
            "Requires capabilities : [CAPABILITY_NAMED_IAM]",
        ));
    }
    Ok(())
}

impl AwsApi for FakeAws {
    async fn caller_identity(&self) -> Result<CallerIdentity, ApiError> {
        drop(self.enter("sts:GetCallerIdentity", "")?);
        Ok(CallerIdentity {
            account: "123456789012".to_owned(),
            arn: "arn:aws:iam::123456789012:user/fake".to_owned(),
        })
    }

    async fn describe_regions(&self) -> Result<Vec<RegionInfo>, ApiError> {
        Ok(self.enter("ec2:DescribeRegions", "")?.regions.clone())
    }

    async fn describe_stack(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<StackInfo>, ApiError> {
        let mut s = self.enter("cloudformation:DescribeStacks", region)?;
        let Some(st) = s.stacks.get_mut(&(region.to_owned(), name.to_owned())) else {
            return Ok(None);
        };
        if st.status.ends_with("_IN_PROGRESS") {
            if st.reads_left == 0 {
                st.status = st.settles_to.clone();
            } else {
                st.reads_left -= 1;
            }
        }
        let info = StackInfo {
            status: st.status.clone(),
            reason: String::new(),
        };
        if info.status == "DELETE_COMPLETE" {
            s.stacks.remove(&(region.to_owned(), name.to_owned()));
            return Ok(None);
        }
        Ok(Some(info))
    }

    async fn get_template(&self, region: &str, name: &str) -> Result<String, ApiError> {
        let s = self.enter("cloudformation:GetTemplate", region)?;
        s.stacks
            .get(&(region.to_owned(), name.to_owned()))
            .map(|st| st.template.clone())
            .ok_or_else(|| {
                validation(
                    "cloudformation:GetTemplate",
                    format!("Stack with id {name} does not exist"),
                )
            })
    }

    async fn create_stack(&self, region: &str, req: &StackRequest) -> Result<(), ApiError> {
        const ACTION: &str = "cloudformation:CreateStack";
        let mut s = self.enter(ACTION, region)?;
        let key = (region.to_owned(), req.stack_name.clone());
        if s.stacks.contains_key(&key) {
            return Err(ApiError::service(
                ACTION,
                400,
                "AlreadyExistsException",
                format!("Stack [{}] already exists", req.stack_name),
            ));
        }
        check_capabilities(ACTION, req)?;
        let fail = s.fail_create.take();
        let reads = s.in_progress_reads;
        s.stacks.insert(
            key,
            FakeStack {
                status: "CREATE_IN_PROGRESS".to_owned(),
                template: req.template_body.clone(),
                reads_left: reads,
                settles_to: if fail.is_some() {
                    "ROLLBACK_COMPLETE".to_owned()
                } else {
                    "CREATE_COMPLETE".to_owned()
                },
                failures: fail.into_iter().collect(),
            },
        );
        Ok(())
    }

    async fn update_stack(&self, region: &str, req: &StackRequest) -> Result<(), ApiError> {
        const ACTION: &str = "cloudformation:UpdateStack";
        let mut s = self.enter(ACTION, region)?;
        let reads = s.in_progress_reads;
        let Some(st) = s
            .stacks
            .get_mut(&(region.to_owned(), req.stack_name.clone()))
        else {
            return Err(validation(
                ACTION,
                format!("Stack [{}] does not exist", req.stack_name),
            ));
        };
        if st.status.ends_with("_IN_PROGRESS") || st.status == "ROLLBACK_COMPLETE" {
            return Err(validation(
                ACTION,
                format!(
                    "Stack:{} is in {} state and can not be updated.",
                    req.stack_name, st.status
                ),
            ));
        }
        check_capabilities(ACTION, req)?;
        if st.template == req.template_body {
            return Err(validation(
                ACTION,
                "No updates are to be performed.".to_owned(),
            ));
        }
        st.template = req.template_body.clone();
        st.status = "UPDATE_IN_PROGRESS".to_owned();
        st.settles_to = "UPDATE_COMPLETE".to_owned();
        st.reads_left = reads;
        Ok(())
    }

    async fn delete_stack(&self, region: &str, name: &str) -> Result<(), ApiError> {
        let mut s = self.enter("cloudformation:DeleteStack", region)?;
        let reads = s.in_progress_reads;
        if let Some(st) = s.stacks.get_mut(&(region.to_owned(), name.to_owned())) {
            st.status = "DELETE_IN_PROGRESS".to_owned();
            st.settles_to = "DELETE_COMPLETE".to_owned();
            st.reads_left = reads;
        }
        Ok(())
    }

    async fn stack_failures(&self, region: &str, name: &str) -> Result<Vec<String>, ApiError> {
        let s = self.enter("cloudformation:DescribeStackEvents", region)?;
        Ok(s.stacks
            .get(&(region.to_owned(), name.to_owned()))
            .map(|st| st.failures.clone())
            .unwrap_or_default())
    }

    async fn find_images(
        &self,
        region: &str,
        owner: &str,
        name: &str,
    ) -> Result<Vec<Image>, ApiError> {
        let s = self.enter("ec2:DescribeImages", region)?;
        Ok(s.images
            .iter()
            .filter(|(r, i)| r == region && i.owner == owner && i.name == name)
            .map(|(_, i)| i.clone())
            .collect())
    }

    async fn key_pair_exists(&self, region: &str, name: &str) -> Result<bool, ApiError> {
        let s = self.enter("ec2:DescribeKeyPairs", region)?;
        Ok(s.key_pairs.contains(&(region.to_owned(), name.to_owned())))
    }
}
