//! The executor: for each step in order, read, decide (pure, in [`crate::desired`]), write the
//! difference, and report. Transient failures are retried here, around each call, so the API
//! implementations stay single-shot.

use std::time::Instant;

use meshfleet_render::AwsPrerequisites;

use crate::api::{AwsApi, StackInfo};
use crate::desired::{self, StackPlan};
use crate::error::{ApiError, SetupError, classify};
use crate::template;
use crate::{Action, Failure, Report, RetryPolicy, SetupOptions, Status, StepEvent, StepRow};

/// Reject unusable input before any API call.
pub(crate) fn check_inputs(p: &AwsPrerequisites, opts: &SetupOptions) -> Result<(), SetupError> {
    if p.regions.is_empty() {
        return Err(SetupError::Invalid {
            message: "the fleet's AWS prerequisites name no region\n  hint: give each AWS cluster a `region`".to_owned(),
        });
    }
    if let Some(e) = &opts.endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        return Err(SetupError::Invalid {
            message: format!(
                "endpoint `{e}` is not an http(s) URL\n  hint: e.g. http://127.0.0.1:5000 (moto) or the simulator's (`aws` in <kubeconfig>.endpoints.json)"
            ),
        });
    }
    if let Some(k) = &p.ssh_key_name
        && (k.len() > 255 || k.chars().any(char::is_control))
    {
        return Err(SetupError::Invalid {
            message: format!(
                "`spec.providers.aws.sshKeyName` `{k}` is not a valid EC2 key-pair name (at most 255 printable characters)\n  hint: use the name `aws ec2 describe-key-pairs` shows"
            ),
        });
    }
    Ok(())
}

/// Call `f` until it succeeds, fails with a non-transient error, or runs out of attempts.
async fn retry<T>(
    policy: &RetryPolicy,
    f: impl AsyncFnMut() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    policy.backoff().retry(f).await
}

/// Run every step against `api`. A dry run only reads.
pub async fn run<A: AwsApi>(
    api: &A,
    prereq: &AwsPrerequisites,
    opts: &SetupOptions,
    progress: impl FnMut(&StepEvent<'_>),
) -> Result<Report, Failure> {
    let mut ex = Exec {
        api,
        p: prereq,
        opts,
        home: desired::home_region(prereq, opts.stack_region.as_deref()),
        progress,
        report: Report::default(),
        pending: Action::Unchanged,
    };
    if let Err(error) = check_inputs(prereq, opts) {
        return Err(Failure {
            report: ex.report,
            error,
        });
    }
    match ex.all().await {
        Ok(()) => Ok(ex.report),
        Err((kind, name, error)) => {
            let row = StepRow {
                kind,
                name,
                action: ex.pending,
                status: Status::Failed,
                detail: error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            };
            (ex.progress)(&StepEvent::Finished(&row));
            ex.report.steps.push(row);
            Err(Failure {
                report: ex.report,
                error,
            })
        }
    }
}

type StepErr = (&'static str, String, SetupError);

struct Exec<'a, A, F> {
    api: &'a A,
    p: &'a AwsPrerequisites,
    opts: &'a SetupOptions,
    /// Region of the IAM stack.
    home: String,
    progress: F,
    report: Report,
    /// What the current step was about to do, for the report when it fails.
    pending: Action,
}

impl<A: AwsApi, F: FnMut(&StepEvent<'_>)> Exec<'_, A, F> {
    fn started(&mut self, kind: &'static str, name: &str) {
        self.pending = Action::Unchanged;
        (self.progress)(&StepEvent::Started { kind, name });
    }

    fn record(&mut self, kind: &'static str, name: &str, action: Action, detail: String) {
        let status = if self.opts.dry_run && action != Action::Unchanged {
            Status::Planned
        } else {
            Status::Done
        };
        let row = StepRow {
            kind,
            name: name.to_owned(),
            action,
            status,
            detail,
        };
        (self.progress)(&StepEvent::Finished(&row));
        self.report.steps.push(row);
    }

    fn err(kind: &'static str, name: &str, e: ApiError) -> StepErr {
        (kind, name.to_owned(), classify(kind, name, e))
    }

    async fn all(&mut self) -> Result<(), StepErr> {
        self.account().await?;
        self.regions().await?;
        let p = self.p;
        for r in &p.regions {
            self.ami(&r.region, r.ami.owner, &r.ami.name, r.ami.arch)
                .await?;
        }
        if let Some(key) = &p.ssh_key_name {
            for r in &p.regions {
                self.key_pair(&r.region, key).await?;
            }
        }
        // The only write comes last: a fleet that cannot boot (no AMI, no key pair, a
        // disabled region) changes nothing in the account.
        self.stack().await
    }

    async fn account(&mut self) -> Result<(), StepErr> {
        const KIND: &str = "account";
        self.started(KIND, "caller");
        let api = self.api;
        let id = retry(&self.opts.retry, async || api.caller_identity().await)
            .await
            .map_err(|e| Self::err(KIND, "caller", e))?;
        self.record(KIND, &id.account, Action::Unchanged, id.arn);
        Ok(())
    }

    async fn regions(&mut self) -> Result<(), StepErr> {
        const KIND: &str = "region";
        let mut names: Vec<String> = self.p.regions.iter().map(|r| r.region.clone()).collect();
        if !names.contains(&self.home) {
            names.push(self.home.clone());
        }
        let first = names[0].clone();
        self.started(KIND, &first);
        let api = self.api;
        let listed = retry(&self.opts.retry, async || api.describe_regions().await)
            .await
            .map_err(|e| Self::err(KIND, &first, e))?;
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                self.started(KIND, name);
            }
            let mut detail =
                desired::check_region(name, &listed).map_err(|e| (KIND, name.clone(), e))?;
            if *name == self.home {
                detail.push_str("; holds the IAM stack");
            }
            self.record(KIND, name, Action::Unchanged, detail);
        }
        Ok(())
    }

    async fn ami(
        &mut self,
        region: &str,
        owner: &str,
        name: &str,
        arch: &str,
    ) -> Result<(), StepErr> {
        const KIND: &str = "ami";
        let row_name = format!("{region}/{name}");
        self.started(KIND, &row_name);
        let api = self.api;
        let images = retry(&self.opts.retry, async || {
            api.find_images(region, owner, name).await
        })
        .await
        .map_err(|e| Self::err(KIND, &row_name, e.in_region(region)))?;
        let detail = desired::check_ami(region, owner, name, arch, &images)
            .map_err(|e| (KIND, row_name.clone(), e))?;
        self.record(KIND, &row_name, Action::Unchanged, detail);
        Ok(())
    }

    async fn key_pair(&mut self, region: &str, key: &str) -> Result<(), StepErr> {
        const KIND: &str = "key-pair";
        let row_name = format!("{region}/{key}");
        self.started(KIND, &row_name);
        let api = self.api;
        let exists = retry(&self.opts.retry, async || {
            api.key_pair_exists(region, key).await
        })
        .await
        .map_err(|e| Self::err(KIND, &row_name, e.in_region(region)))?;
        if !exists {
            return Err((
                KIND,
                row_name,
                SetupError::KeyPairMissing {
                    name: key.to_owned(),
                    region: region.to_owned(),
                },
            ));
        }
        self.record(KIND, &row_name, Action::Unchanged, "exists".to_owned());
        Ok(())
    }

    async fn describe(&self, name: &str) -> Result<Option<StackInfo>, ApiError> {
        let (api, home) = (self.api, self.home.as_str());
        retry(&self.opts.retry, async || {
            api.describe_stack(home, name).await
        })
        .await
        .map_err(|e| e.in_region(home))
    }

    /// Poll until the stack leaves `*_IN_PROGRESS` (or disappears).
    async fn wait_stable(&self, name: &str) -> Result<Option<StackInfo>, StepErr> {
        const KIND: &str = "iam-stack";
        let start = Instant::now();
        loop {
            let info = self
                .describe(name)
                .await
                .map_err(|e| Self::err(KIND, name, e))?;
            match &info {
                Some(s) if s.status.ends_with("_IN_PROGRESS") => {
                    if start.elapsed() >= self.opts.retry.stack_timeout {
                        return Err((
                            KIND,
                            name.to_owned(),
                            SetupError::StackFailed {
                                stack: name.to_owned(),
                                region: self.home.clone(),
                                status: s.status.clone(),
                                reason: format!(
                                    "still in progress after {}s",
                                    start.elapsed().as_secs()
                                ),
                                hint: "watch it with `aws cloudformation describe-stack-events`, then re-run: setup waits for a stack in progress".to_owned(),
                            },
                        ));
                    }
                    tokio::time::sleep(self.opts.retry.poll).await;
                }
                _ => return Ok(info),
            }
        }
    }

    /// The failure reasons CloudFormation recorded, for the error.
    async fn failure_reason(&self, name: &str) -> String {
        let (api, home) = (self.api, self.home.as_str());
        match retry(&self.opts.retry, async || {
            api.stack_failures(home, name).await
        })
        .await
        {
            Ok(reasons) if !reasons.is_empty() => reasons.join("; "),
            Ok(_) => "CloudFormation recorded no reason".to_owned(),
            Err(e) => format!("its events could not be read ({e})"),
        }
    }

    async fn stack_failed(&self, name: &str, status: &str) -> StepErr {
        let reason = self.failure_reason(name).await;
        let hint = if let Some(action) = crate::error::denied_action(&reason) {
            format!(
                "the caller may not `{action}`: allow it (CloudFormation creates CAPA's IAM with the caller's permissions), then re-run"
            )
        } else if reason.contains("already exists") {
            format!(
                "CAPA's IAM names already exist outside this stack (a `clusterawsadm` stack in another region, or roles made by hand): re-run with AWS_REGION set to that stack's region, or delete the stray roles; this stack lives in {}",
                self.home
            )
        } else {
            "fix the cause named above and re-run: setup resumes where it stopped".to_owned()
        };
        (
            "iam-stack",
            name.to_owned(),
            SetupError::StackFailed {
                stack: name.to_owned(),
                region: self.home.clone(),
                status: status.to_owned(),
                reason,
                hint,
            },
        )
    }

    async fn stack(&mut self) -> Result<(), StepErr> {
        const KIND: &str = "iam-stack";
        let req = desired::stack_request(self.p);
        let name = req.stack_name.clone();
        let tpl = template::capa_iam();
        self.started(KIND, &name);
        let api = self.api;
        let home = self.home.clone();
        let mut replaced = false;
        loop {
            let info = self
                .describe(&name)
                .await
                .map_err(|e| Self::err(KIND, &name, e))?;
            match desired::stack_plan(info.as_ref()) {
                StackPlan::Wait => {
                    // Reading is allowed in a dry run too: the interrupted operation finishes
                    // server-side either way.
                    (self.progress)(&StepEvent::Waiting {
                        on: "CloudFormation",
                        kind: KIND,
                        name: &name,
                    });
                    self.wait_stable(&name).await?;
                }
                StackPlan::Stuck { hint } => {
                    let status = info.map(|s| s.status).unwrap_or_default();
                    let reason = self.failure_reason(&name).await;
                    return Err((
                        KIND,
                        name.clone(),
                        SetupError::StackFailed {
                            stack: name.clone(),
                            region: home,
                            status,
                            reason,
                            hint: hint.replace("NAME", &name),
                        },
                    ));
                }
                StackPlan::Recreate => {
                    self.pending = Action::Create;
                    let detail = format!(
                        "{} holds a create that rolled back (ROLLBACK_COMPLETE, no resources): delete it and create it again",
                        name
                    );
                    if self.opts.dry_run {
                        self.record(KIND, &name, Action::Create, format!("would {detail}"));
                        return Ok(());
                    }
                    retry(&self.opts.retry, async || {
                        api.delete_stack(&home, &name).await
                    })
                    .await
                    .map_err(|e| Self::err(KIND, &name, e.in_region(&home)))?;
                    (self.progress)(&StepEvent::Waiting {
                        on: "CloudFormation",
                        kind: KIND,
                        name: &name,
                    });
                    self.wait_stable(&name).await?;
                    replaced = true;
                }
                StackPlan::Create => {
                    self.pending = Action::Create;
                    let what = format!(
                        "stack in {home} with CAPABILITY_NAMED_IAM: {}",
                        desired::stack_summary(&tpl)
                    );
                    if self.opts.dry_run {
                        self.record(KIND, &name, Action::Create, format!("would create {what}"));
                        return Ok(());
                    }
                    match retry(&self.opts.retry, async || {
                        api.create_stack(&home, &req).await
                    })
                    .await
                    {
                        Ok(()) => {}
                        // Someone (an earlier, killed run) created it between our read and
                        // write: decide again from what is there.
                        Err(e) if e.code == "AlreadyExistsException" => continue,
                        Err(e) => return Err(Self::err(KIND, &name, e.in_region(&home))),
                    }
                    (self.progress)(&StepEvent::Waiting {
                        on: "CloudFormation",
                        kind: KIND,
                        name: &name,
                    });
                    let end = self.wait_stable(&name).await?;
                    let status = end.map(|s| s.status).unwrap_or_else(|| "gone".to_owned());
                    if !desired::ended_well(&status, "CREATE_COMPLETE") {
                        return Err(self.stack_failed(&name, &status).await);
                    }
                    let prefix = if replaced {
                        "replaced a rolled-back stack; "
                    } else {
                        ""
                    };
                    self.record(
                        KIND,
                        &name,
                        Action::Create,
                        format!("{prefix}created {what}"),
                    );
                    return Ok(());
                }
                StackPlan::Compare => {
                    let body = retry(&self.opts.retry, async || {
                        api.get_template(&home, &name).await
                    })
                    .await
                    .map_err(|e| Self::err(KIND, &name, e.in_region(&home)))?;
                    let diff = desired::template_diff(&body, &tpl);
                    if diff.is_empty() {
                        self.record(
                            KIND,
                            &name,
                            Action::Unchanged,
                            format!(
                                "in {home}; instance profiles {}",
                                tpl.instance_profiles().join(", ")
                            ),
                        );
                        return Ok(());
                    }
                    self.pending = Action::Update;
                    let what = diff.join(", ");
                    if self.opts.dry_run {
                        self.record(KIND, &name, Action::Update, format!("would {what}"));
                        return Ok(());
                    }
                    match retry(&self.opts.retry, async || {
                        api.update_stack(&home, &req).await
                    })
                    .await
                    {
                        Ok(()) => {}
                        // CloudFormation found nothing to change (e.g. only formatting differed).
                        Err(e) if e.is_no_updates() => {
                            self.record(
                                KIND,
                                &name,
                                Action::Unchanged,
                                format!("in {home}; CloudFormation reports no updates to perform"),
                            );
                            return Ok(());
                        }
                        Err(e) => return Err(Self::err(KIND, &name, e.in_region(&home))),
                    }
                    (self.progress)(&StepEvent::Waiting {
                        on: "CloudFormation",
                        kind: KIND,
                        name: &name,
                    });
                    let end = self.wait_stable(&name).await?;
                    let status = end.map(|s| s.status).unwrap_or_else(|| "gone".to_owned());
                    if !desired::ended_well(&status, "UPDATE_COMPLETE") {
                        return Err(self.stack_failed(&name, &status).await);
                    }
                    self.record(KIND, &name, Action::Update, what);
                    return Ok(());
                }
            }
        }
    }
}
