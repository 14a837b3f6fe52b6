//! The executor: for each resource in order, read, decide (pure, in [`crate::desired`]), write
//! the difference, and report. Transient failures are retried here, around each call, so the
//! API implementations stay single-shot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meshfleet_render::GcpPrerequisites;
use serde_json::Value;

use crate::api::{ComputeRef, GcpApi};
use crate::desired::{self, Diff};
use crate::error::{ApiError, SetupError, classify};
use crate::{Action, Failure, Report, RetryPolicy, SetupOptions, Status, StepEvent, StepRow};

/// How many times an IAM policy write is retried on a stale etag (someone else wrote between
/// our read and write).
const ETAG_ATTEMPTS: u32 = 10;

/// Reject unusable input before any API call: no image bucket, an image file that is not there.
pub(crate) fn check_inputs(p: &GcpPrerequisites, opts: &SetupOptions) -> Result<(), SetupError> {
    if p.image.bucket.as_deref().is_none_or(str::is_empty) {
        return Err(SetupError::Invalid {
            message: format!(
                "`spec.providers.gcp.imageBucket` is not set: setup uploads the Talos image through a bucket\n  hint: add `imageBucket: {}-meshfleet-talos` (any globally unique name) under `spec.providers.gcp`",
                p.project
            ),
        });
    }
    if let Some(src) = &opts.image_source
        && !is_url(src)
    {
        let path = Path::new(src);
        if !path.is_file() {
            return Err(SetupError::Invalid {
                message: format!(
                    "--image-source `{src}` is not a readable file or an http(s) URL\n  hint: pass the path of a Talos `gcp-amd64.raw.tar.gz`, or omit it to download from the Talos Image Factory"
                ),
            });
        }
    }
    Ok(())
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Call `f` until it succeeds, fails with a non-transient error, or runs out of attempts.
async fn retry<T>(
    policy: &RetryPolicy,
    f: impl AsyncFnMut() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    policy.backoff().retry(f).await
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    policy.backoff().wait(attempt)
}

/// Run every step against `api`. A dry run only reads.
pub async fn run<A: GcpApi>(
    api: &A,
    prereq: &GcpPrerequisites,
    opts: &SetupOptions,
    progress: impl FnMut(&StepEvent<'_>),
) -> Result<Report, Failure> {
    let mut ex = Exec {
        api,
        p: prereq,
        opts,
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
                detail: first_line(&error.to_string()),
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

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

type StepErr = (&'static str, String, SetupError);

struct Exec<'a, A, F> {
    api: &'a A,
    p: &'a GcpPrerequisites,
    opts: &'a SetupOptions,
    progress: F,
    report: Report,
    /// What the current step was about to do, for the report when it fails.
    pending: Action,
}

impl<A: GcpApi, F: FnMut(&StepEvent<'_>)> Exec<'_, A, F> {
    fn project(&self) -> &str {
        &self.p.project
    }

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

    fn err(&self, kind: &'static str, name: &str, e: ApiError) -> StepErr {
        (
            kind,
            name.to_owned(),
            classify(kind, name, self.project(), e),
        )
    }

    /// A read that, in a dry run, treats "API not enabled yet" as absent: the run would
    /// enable the API first.
    fn absent_in_dry_run<T>(&self, r: Result<Option<T>, ApiError>) -> Result<Option<T>, ApiError> {
        match r {
            Err(e) if self.opts.dry_run && e.is_service_disabled() => Ok(None),
            other => other,
        }
    }

    async fn all(&mut self) -> Result<(), StepErr> {
        self.apis().await?;
        let sa_exists = self.service_account().await?;
        self.roles().await?;
        self.key(sa_exists).await?;
        let bucket = self.p.image.bucket.clone().unwrap_or_default();
        self.bucket(&bucket).await?;
        self.image_object(&bucket).await?;
        let p = self.p;
        self.compute("image", ComputeRef::Image(p.image.name.clone()), |have| {
            desired::diff_image(p, &bucket, have)
        })
        .await?;
        self.compute(
            "network",
            ComputeRef::Network(p.network.name.clone()),
            |have| desired::diff_network(p, have),
        )
        .await?;
        self.compute_all(
            "subnetwork",
            &p.subnetworks,
            |s| ComputeRef::Subnetwork {
                region: s.region.clone(),
                name: s.name.clone(),
            },
            |s, have| desired::diff_subnetwork(p, s, have),
        )
        .await?;
        self.compute_all(
            "router",
            &p.routers,
            |rt| ComputeRef::Router {
                region: rt.region.clone(),
                name: rt.name.clone(),
            },
            |rt, have| desired::diff_router(p, rt, have),
        )
        .await?;
        self.compute_all(
            "firewall",
            &p.firewall_rules,
            |f| ComputeRef::Firewall(f.name.clone()),
            |f, have| desired::diff_firewall(p, f, have),
        )
        .await?;
        Ok(())
    }

    async fn apis(&mut self) -> Result<(), StepErr> {
        let names: Vec<String> = self.p.apis.iter().map(|s| (*s).to_owned()).collect();
        let label = "services";
        self.started("api", label);
        let (api, project, policy) = (self.api, self.project().to_owned(), &self.opts.retry);
        let states = retry(policy, async || api.services_state(&project, &names).await)
            .await
            .map_err(|e| self.err("api", label, e))?;
        let missing: Vec<String> = names
            .iter()
            .zip(
                states
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::repeat("")),
            )
            .filter(|(_, st)| *st != "ENABLED")
            .map(|(n, _)| n.clone())
            .collect();
        if !missing.is_empty() && !self.opts.dry_run {
            self.pending = Action::Create;
            retry(policy, async || {
                api.enable_services(&project, &missing).await
            })
            .await
            .map_err(|e| self.err("api", &missing.join(","), e))?;
        }
        for n in &names {
            if missing.contains(n) {
                self.record("api", n, Action::Create, "enable".to_owned());
            } else {
                self.record("api", n, Action::Unchanged, "enabled".to_owned());
            }
        }
        Ok(())
    }

    /// Returns whether the account exists after the step (false only in a dry run).
    async fn service_account(&mut self) -> Result<bool, StepErr> {
        let email = desired::service_account_email(self.p);
        self.started("service-account", &email);
        let (api, project, policy) = (self.api, self.project().to_owned(), &self.opts.retry);
        let have = retry(policy, async || {
            api.get_service_account(&project, &email).await
        })
        .await;
        let have = self
            .absent_in_dry_run(have)
            .map_err(|e| self.err("service-account", &email, e))?;
        if have.is_some() {
            self.record("service-account", &email, Action::Unchanged, String::new());
            return Ok(true);
        }
        if self.opts.dry_run {
            self.record("service-account", &email, Action::Create, String::new());
            return Ok(false);
        }
        self.pending = Action::Create;
        let id = self.p.service_account.name;
        let display = "CAPG controller (meshfleet)";
        let created = retry(policy, async || {
            api.create_service_account(&project, id, display).await
        })
        .await;
        let detail = match created {
            Ok(_) => String::new(),
            Err(e) if e.is_already_exists() => "already existed".to_owned(),
            Err(e) => return Err(self.err("service-account", &email, e)),
        };
        self.record("service-account", &email, Action::Create, detail);
        Ok(true)
    }

    async fn roles(&mut self) -> Result<(), StepErr> {
        let member = desired::service_account_member(self.p);
        let roles = self.p.service_account.roles.clone();
        let label = "roles";
        self.started("iam-role", label);
        let (api, project, policy) = (self.api, self.project().to_owned(), &self.opts.retry);
        let deadline = Instant::now() + policy.propagation;
        let mut etag_attempts = 0;
        let added = loop {
            let current = match retry(policy, async || api.get_iam_policy(&project).await).await {
                // Dry run before Resource Manager is enabled: the run would enable it first,
                // and every role counts as to be granted.
                Err(e) if self.opts.dry_run && e.is_service_disabled() => Value::Null,
                other => other.map_err(|e| self.err("iam-role", label, e))?,
            };
            let Some((added, new)) = desired::merge_policy(&current, &member, &roles) else {
                break Vec::new();
            };
            if self.opts.dry_run {
                break added;
            }
            self.pending = Action::Create;
            match retry(policy, async || api.set_iam_policy(&project, &new).await).await {
                Ok(_) => break added,
                Err(e) if e.is_aborted() && etag_attempts + 1 < ETAG_ATTEMPTS => {
                    // Someone wrote the policy between our read and write: read again.
                    etag_attempts += 1;
                }
                Err(e) if e.is_member_not_found() && Instant::now() < deadline => {
                    // A new service account takes a while to be visible to IAM policies.
                    tokio::time::sleep(backoff(policy, 1)).await;
                }
                Err(e) => return Err(self.err("iam-role", label, e)),
            }
        };
        for role in &roles {
            let action = if added.iter().any(|a| a == role) {
                Action::Create
            } else {
                Action::Unchanged
            };
            self.record("iam-role", role, action, member.clone());
        }
        Ok(())
    }

    fn key_path(&self) -> PathBuf {
        self.opts.key_dir.join(format!(
            "{}-{}.json",
            self.p.project, self.p.service_account.name
        ))
    }

    async fn key(&mut self, sa_exists: bool) -> Result<(), StepErr> {
        let email = desired::service_account_email(self.p);
        let path = self.key_path();
        self.started("key", &email);
        let held = held_key_id(&path).map_err(|e| ("key", email.clone(), e))?;
        let (api, project, policy) = (self.api, self.project().to_owned(), &self.opts.retry);
        let keys = if sa_exists {
            match retry(policy, async || api.list_keys(&project, &email).await).await {
                Ok(k) => k,
                // A dry run's account may not exist yet, and a new account may not be visible to
                // the keys API for a few seconds: either way it holds no key.
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(self.err("key", &email, e)),
            }
        } else {
            Vec::new()
        };
        let shown = path.display().to_string();
        if let Some(id) = &held
            && keys
                .iter()
                .any(|k| k.rsplit('/').next() == Some(id.as_str()))
        {
            self.record("key", &email, Action::Unchanged, format!("held in {shown}"));
            return Ok(());
        }
        let why = match &held {
            Some(id) => {
                format!("held key {id} no longer exists on the account; new key to {shown}")
            }
            None => format!("new key to {shown}"),
        };
        if self.opts.dry_run {
            self.record("key", &email, Action::Create, why);
            return Ok(());
        }
        self.pending = Action::Create;
        // Not retried on 5xx: key creation is not idempotent, and an unseen key would count
        // towards the account's limit of 10. A re-run creates one if this failed.
        let deadline = Instant::now() + policy.propagation;
        let key = loop {
            match api.create_key(&project, &email).await {
                Ok(k) => break k,
                // A just-created account is eventually consistent: wait for it, bounded.
                Err(e) if e.is_not_found() && Instant::now() < deadline => {
                    tokio::time::sleep(backoff(policy, 1)).await;
                }
                Err(e) => return Err(self.err("key", &email, e)),
            }
        };
        store_key(&path, &key).map_err(|e| ("key", email.clone(), e))?;
        self.record("key", &email, Action::Create, why);
        Ok(())
    }

    async fn bucket(&mut self, bucket: &str) -> Result<(), StepErr> {
        self.started("bucket", bucket);
        let location = self
            .p
            .subnetworks
            .first()
            .map_or("US".to_owned(), |s| s.region.clone());
        let (api, project, policy) = (self.api, self.project().to_owned(), &self.opts.retry);
        let taken = |e: ApiError| {
            let project = project.clone();
            move || {
                (
                    "bucket",
                    bucket.to_owned(),
                    SetupError::BucketTaken {
                        bucket: bucket.to_owned(),
                        project,
                        source: e,
                    },
                )
            }
        };
        let have = match retry(policy, async || api.get_bucket(bucket).await).await {
            Err(e)
                if e.http == Some(403) && !e.is_billing_disabled() && !e.is_service_disabled() =>
            {
                return Err(taken(e)());
            }
            other => self
                .absent_in_dry_run(other)
                .map_err(|e| self.err("bucket", bucket, e))?,
        };
        match desired::diff_bucket(bucket, &location, have.as_ref()) {
            Diff::Unchanged => self.record("bucket", bucket, Action::Unchanged, String::new()),
            Diff::Create(body) => {
                self.pending = Action::Create;
                let mut detail = format!("location {location}");
                if !self.opts.dry_run {
                    match retry(policy, async || api.insert_bucket(&project, &body).await).await {
                        Ok(_) => {}
                        Err(e) if e.is_already_exists() => {
                            // Ours from an interrupted attempt, or someone else's: GET tells.
                            match api.get_bucket(bucket).await {
                                Ok(Some(_)) => detail = "already existed".to_owned(),
                                Err(e2) if e2.http == Some(403) => return Err(taken(e2)()),
                                _ => return Err(taken(e)()),
                            }
                        }
                        Err(e) => return Err(self.err("bucket", bucket, e)),
                    }
                }
                self.record("bucket", bucket, Action::Create, detail);
            }
            Diff::Update { body, detail } => {
                self.pending = Action::Update;
                if !self.opts.dry_run {
                    retry(policy, async || api.patch_bucket(bucket, &body).await)
                        .await
                        .map_err(|e| self.err("bucket", bucket, e))?;
                }
                self.record("bucket", bucket, Action::Update, detail);
            }
        }
        Ok(())
    }

    async fn image_object(&mut self, bucket: &str) -> Result<(), StepErr> {
        let object = self.p.image.object.clone();
        let name = format!("gs://{bucket}/{object}");
        self.started("image-object", &name);
        let (api, policy) = (self.api, &self.opts.retry);
        // The raw disk only feeds the image: once the image exists, a missing object (say, a
        // bucket lifecycle rule deleted it) is no reason to download hundreds of MB again.
        let project = self.project().to_owned();
        let image = ComputeRef::Image(self.p.image.name.clone());
        let image_exists = retry(policy, async || api.compute_get(&project, &image).await).await;
        if let Ok(Some(_)) = image_exists {
            let detail = format!("image {} exists", self.p.image.name);
            self.record("image-object", &name, Action::Unchanged, detail);
            return Ok(());
        }
        let have = retry(policy, async || api.get_object(bucket, &object).await).await;
        let have = match have {
            Err(e) if e.is_not_found() && self.opts.dry_run => Ok(None),
            other => self.absent_in_dry_run(other),
        }
        .map_err(|e| self.err("image-object", &name, e))?;
        if have.is_some() {
            self.record("image-object", &name, Action::Unchanged, String::new());
            return Ok(());
        }
        let source = self
            .opts
            .image_source
            .clone()
            .unwrap_or_else(|| self.p.image.source.clone());
        if self.opts.dry_run {
            self.record(
                "image-object",
                &name,
                Action::Create,
                format!("from {source}"),
            );
            return Ok(());
        }
        self.pending = Action::Create;
        // A URL is downloaded to a temporary file first, so the upload can resume and retry
        // from a seekable source.
        let (path, _tmp) = if is_url(&source) {
            let tmp = download(&source)
                .await
                .map_err(|e| ("image-object", name.clone(), e))?;
            (tmp.path().to_owned(), Some(tmp))
        } else {
            (PathBuf::from(&source), None)
        };
        let uploaded = retry(policy, async || {
            api.upload_object(bucket, &object, &path).await
        })
        .await
        .map_err(|e| self.err("image-object", &name, e))?;
        let detail = if uploaded {
            format!("from {source}")
        } else {
            "already there (412)".to_owned()
        };
        self.record("image-object", &name, Action::Create, detail);
        Ok(())
    }

    async fn compute(
        &mut self,
        kind: &'static str,
        r: ComputeRef,
        decide: impl Fn(Option<&Value>) -> Result<Diff, SetupError>,
    ) -> Result<(), StepErr> {
        let name = r.name().to_owned();
        self.started(kind, &name);
        match compute_step(self.api, &self.p.project, self.opts, kind, r, decide).await {
            Ok((action, detail)) => {
                self.record(kind, &name, action, detail);
                Ok(())
            }
            Err((pending, e)) => {
                self.pending = pending;
                Err(e)
            }
        }
    }

    /// [`Exec::compute`] for resources of one kind that do not depend on each other, up to
    /// [`PARALLEL`] at a time; reported in order, stopping at the first failure.
    async fn compute_all<T>(
        &mut self,
        kind: &'static str,
        items: &[T],
        to_ref: impl Fn(&T) -> ComputeRef,
        decide: impl Fn(&T, Option<&Value>) -> Result<Diff, SetupError>,
    ) -> Result<(), StepErr> {
        use futures_util::StreamExt;
        let (api, opts, project) = (self.api, self.opts, self.p.project.as_str());
        let decide = &decide;
        let mut results = futures_util::stream::iter(items.iter().map(|it| {
            let r = to_ref(it);
            async move {
                let name = r.name().to_owned();
                let res = compute_step(api, project, opts, kind, r, |have| decide(it, have)).await;
                (name, res)
            }
        }))
        .buffered(PARALLEL);
        while let Some((name, res)) = results.next().await {
            self.started(kind, &name);
            match res {
                Ok((action, detail)) => self.record(kind, &name, action, detail),
                Err((pending, e)) => {
                    self.pending = pending;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// How many independent Compute resources of one kind are read and written at once. Each
/// write is an operation that takes seconds on Google: a fleet's hundreds of firewall rules
/// one after another would take hours.
const PARALLEL: usize = 8;

/// One Compute resource: read, decide, write the difference. `Ok` is what was done and its
/// detail; `Err` carries what was about to be done.
async fn compute_step<A: GcpApi>(
    api: &A,
    project: &str,
    opts: &SetupOptions,
    kind: &'static str,
    r: ComputeRef,
    decide: impl Fn(Option<&Value>) -> Result<Diff, SetupError>,
) -> Result<(Action, String), (Action, StepErr)> {
    let name = r.name().to_owned();
    let policy = &opts.retry;
    let fail = |pending: Action, e: ApiError| {
        (
            pending,
            (kind, name.clone(), classify(kind, &name, project, e)),
        )
    };
    let have = match retry(policy, async || api.compute_get(project, &r).await).await {
        // In a dry run the API may not be enabled yet: the run would enable it first.
        Err(e) if opts.dry_run && e.is_service_disabled() => Ok(None),
        other => other,
    };
    let have = have.map_err(|e| fail(Action::Unchanged, e))?;
    let diff = decide(have.as_ref()).map_err(|e| (Action::Unchanged, (kind, name.clone(), e)))?;
    // One request id per write, reused by every retry of it: Compute then runs the write at
    // most once.
    let request_id = uuid::Uuid::new_v4().to_string();
    match diff {
        Diff::Unchanged => Ok((Action::Unchanged, String::new())),
        Diff::Create(body) => {
            let mut detail = desired::describe(kind, &body);
            if !opts.dry_run {
                match retry(policy, async || {
                    api.compute_insert(project, &r, &body, &request_id).await
                })
                .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_already_exists() => {
                        // Created meanwhile (an earlier attempt or another run): check it is
                        // what we want. An insert still running (a run killed mid-way) already
                        // answers 409 while a read still gives 404, so wait for it a while.
                        let mut have = None;
                        for attempt in 0..12u32 {
                            have = retry(policy, async || api.compute_get(project, &r).await)
                                .await
                                .map_err(|e| fail(Action::Create, e))?;
                            if have.is_some() {
                                break;
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(
                                50 * u64::from(attempt.min(10) + 1),
                            ))
                            .await;
                        }
                        let conflict = match decide(have.as_ref())
                            .map_err(|e| (Action::Create, (kind, name.clone(), e)))?
                        {
                            Diff::Unchanged => None,
                            Diff::Update { detail: d, .. } => Some(format!(
                                "created concurrently with different settings ({d}); re-run setup"
                            )),
                            Diff::Create(_) => Some(
                                "insert answered 409 but the resource cannot be read; re-run setup"
                                    .to_owned(),
                            ),
                        };
                        if let Some(m) = conflict {
                            return Err(fail(
                                Action::Create,
                                ApiError::new(409, "ALREADY_EXISTS", m),
                            ));
                        }
                        detail = "already existed".to_owned();
                    }
                    Err(e) => return Err(fail(Action::Create, e)),
                }
            }
            Ok((Action::Create, detail))
        }
        Diff::Update { body, detail } => {
            if !opts.dry_run {
                retry(policy, async || {
                    api.compute_patch(project, &r, &body, &request_id).await
                })
                .await
                .map_err(|e| fail(Action::Update, e))?;
            }
            Ok((Action::Update, detail))
        }
    }
}

/// The key id of the credentials file meshfleet holds, if any.
fn held_key_id(path: &Path) -> Result<Option<String>, SetupError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SetupError::Io {
                what: "cannot read the service-account key",
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(serde_json::from_slice::<Value>(&text)
        .ok()
        .and_then(|v| v["private_key_id"].as_str().map(str::to_owned)))
}

/// Write the key atomically with mode 0600 in a 0700 directory. The file is the credentials
/// JSON exactly as IAM returned it; when it lacks `private_key_id` (a stand-in API), the id is
/// added so the next run can recognise the key.
fn store_key(path: &Path, key: &crate::api::CreatedKey) -> Result<(), SetupError> {
    use std::io::Write;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::Io { what, path, source }
    };
    let id = key.name.rsplit('/').next().unwrap_or_default();
    let data = match serde_json::from_slice::<Value>(&key.private_key_data) {
        Ok(mut v) if v.is_object() && v.get("private_key_id").is_none() => {
            v["private_key_id"] = Value::String(id.to_owned());
            serde_json::to_vec_pretty(&v).unwrap_or_else(|_| key.private_key_data.clone())
        }
        _ => key.private_key_data.clone(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(io("cannot create the key directory", dir))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(io("cannot create a file in", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot restrict", tmp.path()))?;
    }
    tmp.write_all(&data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io("cannot write the service-account key", path))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(io("cannot write the service-account key", path))?;
    Ok(())
}

/// Download a URL to a temporary file.
async fn download(url: &str) -> Result<tempfile::NamedTempFile, SetupError> {
    use std::io::Write;
    let fail = |message: String| SetupError::Download {
        url: url.to_owned(),
        message,
    };
    crate::real::install_crypto_provider();
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?;
    let mut tmp = tempfile::NamedTempFile::new().map_err(|e| fail(e.to_string()))?;
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        tmp.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
    }
    tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
    Ok(tmp)
}
