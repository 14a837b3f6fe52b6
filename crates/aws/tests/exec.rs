//! The executor against the in-memory fake: create, idempotence, dry run, resume, and every
//! failure the operator must be told about.

mod common;

use std::time::Duration;

use meshfleet_aws::error::Failed;
use meshfleet_aws::fake::FakeAws;
use meshfleet_aws::{Action, ApiError, SetupError, Status, StepEvent, run, template};

const STACK: &str = template::STACK_NAME;

/// A fake account where the example fleet can boot: the AMI in its region, the key pair.
fn ready() -> FakeAws {
    let f = FakeAws::new();
    let p = common::example_prereq();
    for r in &p.regions {
        f.add_image(&r.region, common::OWNER, &r.ami.name, "available");
        f.add_key_pair(&r.region, "ops");
    }
    f
}

fn kinds(r: &meshfleet_aws::Report) -> Vec<(String, String, Action)> {
    r.steps
        .iter()
        .map(|s| (s.kind.to_owned(), s.name.clone(), s.action))
        .collect()
}

#[tokio::test]
async fn creates_then_second_run_is_unchanged() {
    let f = ready();
    let p = common::example_prereq();
    let o = common::fast_options();
    let r = run(&f, &p, &o, |_| {}).await.expect("setup");
    assert_eq!(
        kinds(&r),
        [
            ("account".into(), "123456789012".into(), Action::Unchanged),
            ("region".into(), "eu-west-1".into(), Action::Unchanged),
            (
                "ami".into(),
                "eu-west-1/talos-v1.13.9-eu-west-1-amd64".into(),
                Action::Unchanged
            ),
            ("key-pair".into(), "eu-west-1/ops".into(), Action::Unchanged),
            ("iam-stack".into(), STACK.into(), Action::Create),
        ]
    );
    assert!(r.steps.iter().all(|s| s.status == Status::Done));
    assert_eq!(
        f.stack("eu-west-1", STACK).unwrap().status,
        "CREATE_COMPLETE"
    );
    let mut profiles = f.instance_profiles();
    profiles.sort();
    assert_eq!(
        profiles,
        [
            "control-plane.cluster-api-provider-aws.sigs.k8s.io",
            "controllers.cluster-api-provider-aws.sigs.k8s.io",
            "nodes.cluster-api-provider-aws.sigs.k8s.io"
        ]
    );
    let writes = f.writes().len();
    let again = run(&f, &p, &o, |_| {}).await.expect("second run");
    assert!(again.all_unchanged(), "{:#?}", again.steps);
    assert_eq!(f.writes().len(), writes, "a second run wrote");
}

#[tokio::test]
async fn dry_run_only_reads_and_says_what_it_would_set() {
    let f = ready();
    let p = common::example_prereq();
    let o = meshfleet_aws::SetupOptions {
        dry_run: true,
        ..common::fast_options()
    };
    let r = run(&f, &p, &o, |_| {}).await.expect("dry run");
    assert!(f.writes().is_empty(), "{:?}", f.writes());
    let stack = r.steps.last().unwrap();
    assert_eq!(
        (stack.action, stack.status),
        (Action::Create, Status::Planned)
    );
    assert!(
        stack
            .detail
            .starts_with("would create stack in eu-west-1 with CAPABILITY_NAMED_IAM"),
        "{}",
        stack.detail
    );
    // After a real run, a dry run of a changed template says what it would update.
    run(&f, &p, &common::fast_options(), |_| {}).await.unwrap();
    f.put_stack("eu-west-1", STACK, "UPDATE_COMPLETE", r#"{"Resources":{"AWSIAMRoleNodes":{"Type":"AWS::IAM::Role","Properties":{"RoleName":"nodes.cluster-api-provider-aws.sigs.k8s.io"}}}}"#);
    let before = f.writes().len();
    let r = run(&f, &p, &o, |_| {}).await.expect("dry run");
    assert_eq!(f.writes().len(), before);
    let stack = r.steps.last().unwrap();
    assert_eq!(
        (stack.action, stack.status),
        (Action::Update, Status::Planned)
    );
    assert!(
        stack.detail.starts_with("would add ")
            && stack.detail.contains("add AWSIAMInstanceProfileNodes")
            && stack.detail.contains("change AWSIAMRoleNodes"),
        "{}",
        stack.detail
    );
}

#[tokio::test]
async fn an_interrupted_run_is_finished_by_the_next() {
    let f = ready();
    f.set_in_progress_reads(1_000_000);
    let p = common::example_prereq();
    let o = common::fast_options();
    // "kill -9" while CloudFormation works: the run is dropped at the first poll.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let run1 = run(&f, &p, &o, |e| {
        if let StepEvent::Waiting { .. } = e
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(());
        }
    });
    tokio::select! {
        _ = run1 => panic!("the first run should still be waiting"),
        _ = async { rx.await.ok(); tokio::time::sleep(Duration::from_millis(20)).await } => {}
    }
    assert_eq!(
        f.stack("eu-west-1", STACK).unwrap().status,
        "CREATE_IN_PROGRESS"
    );
    // The stack finishes server-side after a few more reads; the re-run waits, then compares.
    f.put_stack_reads_left("eu-west-1", STACK, 3);
    let r = run(&f, &p, &o, |_| {}).await.expect("resume");
    let stack = r.steps.last().unwrap();
    assert_eq!(stack.action, Action::Unchanged, "{stack:?}");
    assert_eq!(
        f.stack("eu-west-1", STACK).unwrap().status,
        "CREATE_COMPLETE"
    );
    assert_eq!(
        f.writes()
            .iter()
            .filter(|w| w.contains("CreateStack"))
            .count(),
        1
    );
}

#[tokio::test]
async fn update_then_unchanged_and_no_updates_is_unchanged() {
    let f = ready();
    let p = common::example_prereq();
    let o = common::fast_options();
    f.put_stack(
        "eu-west-1",
        STACK,
        "CREATE_COMPLETE",
        "AWSTemplateFormatVersion: 2010-09-09\n",
    );
    let r = run(&f, &p, &o, |_| {}).await.expect("update");
    let s = r.steps.last().unwrap();
    assert_eq!(s.action, Action::Update);
    assert!(s.detail.contains("not meshfleet's"), "{}", s.detail);
    assert_eq!(
        f.stack("eu-west-1", STACK).unwrap().status,
        "UPDATE_COMPLETE"
    );
    assert!(run(&f, &p, &o, |_| {}).await.unwrap().all_unchanged());
    // A template that differs but that CloudFormation finds equivalent.
    f.put_stack("eu-west-1", STACK, "UPDATE_COMPLETE", "{}");
    f.fail_next(
        "cloudformation:UpdateStack",
        ApiError::service(
            "cloudformation:UpdateStack",
            400,
            "ValidationError",
            "No updates are to be performed.",
        ),
    );
    let r = run(&f, &p, &o, |_| {}).await.expect("no updates");
    let s = r.steps.last().unwrap();
    assert_eq!(s.action, Action::Unchanged);
    assert!(s.detail.contains("no updates"), "{}", s.detail);
}

#[tokio::test]
async fn a_rolled_back_create_is_replaced() {
    let f = ready();
    let p = common::example_prereq();
    f.put_stack("eu-west-1", STACK, "ROLLBACK_COMPLETE", "{}");
    let r = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .expect("recreate");
    let s = r.steps.last().unwrap();
    assert_eq!(s.action, Action::Create);
    assert!(
        s.detail.starts_with("replaced a rolled-back stack"),
        "{}",
        s.detail
    );
    assert!(f.writes().iter().any(|w| w.contains("DeleteStack")));
    assert_eq!(
        f.stack("eu-west-1", STACK).unwrap().status,
        "CREATE_COMPLETE"
    );
}

#[tokio::test]
async fn a_create_without_iam_permission_names_the_action() {
    let f = ready();
    let p = common::example_prereq();
    f.fail_next_create("AWSIAMRoleNodes: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: iam:CreateRole on resource: nodes.cluster-api-provider-aws.sigs.k8s.io");
    let e = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&e.error, SetupError::StackFailed { status, .. } if status == "ROLLBACK_COMPLETE"),
        "{:?}",
        e.error
    );
    let msg = e.error.to_string();
    assert!(msg.contains("may not `iam:CreateRole`"), "{msg}");
    let last = e.report.steps.last().unwrap();
    assert_eq!(
        (last.kind, last.status, last.action),
        ("iam-stack", Status::Failed, Action::Create)
    );
}

#[tokio::test]
async fn a_missing_ami_is_precise_and_writes_nothing() {
    let f = FakeAws::new();
    f.add_key_pair("eu-west-1", "ops");
    let p = common::example_prereq();
    let e = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&e.error, SetupError::AmiMissing { region, version, .. } if region == "eu-west-1" && version == "v1.13.9")
    );
    assert!(f.writes().is_empty());
    let last = e.report.steps.last().unwrap();
    assert_eq!((last.kind, last.status), ("ami", Status::Failed));
}

#[tokio::test]
async fn a_missing_key_pair_is_checked_per_region_never_created() {
    let f = ready();
    let p = common::two_region_prereq();
    f.add_image(
        "us-east-1",
        common::OWNER,
        &p.regions[1].ami.name,
        "available",
    );
    let e = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        e.error,
        SetupError::KeyPairMissing {
            name: "ops".into(),
            region: "us-east-1".into()
        }
    );
    assert!(
        e.error
            .to_string()
            .contains("import-key-pair --region us-east-1 --key-name ops")
    );
    assert!(f.writes().is_empty());
    assert!(
        !f.calls()
            .iter()
            .any(|c| c.contains("KeyPair") && c.contains("Create"))
    );
}

#[tokio::test]
async fn a_fleet_without_key_name_checks_no_key_pair() {
    let f = ready();
    let mut p = common::example_prereq();
    p.ssh_key_name = None;
    let r = run(&f, &p, &common::fast_options(), |_| {}).await.unwrap();
    assert!(!r.steps.iter().any(|s| s.kind == "key-pair"));
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let f = ready();
    let p = common::example_prereq();
    f.fail_next(
        "ec2:DescribeImages",
        ApiError::service("ec2:DescribeImages", 503, "ServiceUnavailable", "try later"),
    );
    f.fail_next(
        "cloudformation:CreateStack",
        ApiError::other(
            "cloudformation:CreateStack",
            Failed::Transport,
            "connection reset",
        ),
    );
    f.fail_next(
        "cloudformation:DescribeStacks",
        ApiError::service(
            "cloudformation:DescribeStacks",
            400,
            "Throttling",
            "Rate exceeded",
        ),
    );
    run(&f, &p, &common::fast_options(), |_| {})
        .await
        .expect("retried");
}

#[tokio::test]
async fn credentials_missing_expired_and_permission_denied() {
    let p = common::example_prereq();
    let o = common::fast_options();
    let f = ready();
    f.fail_next(
        "sts:GetCallerIdentity",
        ApiError::other(
            "sts:GetCallerIdentity",
            Failed::Credentials,
            "no providers in chain provided credentials",
        ),
    );
    let e = run(&f, &p, &o, |_| {}).await.unwrap_err().error.to_string();
    assert!(
        e.contains("AWS credentials are missing") && e.contains("AWS_PROFILE"),
        "{e}"
    );

    let f = ready();
    f.fail_next(
        "sts:GetCallerIdentity",
        ApiError::service(
            "sts:GetCallerIdentity",
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        ),
    );
    let e = run(&f, &p, &o, |_| {}).await.unwrap_err().error.to_string();
    assert!(
        e.contains("have expired") && e.contains("aws sso login"),
        "{e}"
    );

    let f = ready();
    f.fail_next(
        "ec2:DescribeImages",
        ApiError::service(
            "ec2:DescribeImages",
            403,
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        ),
    );
    let e = run(&f, &p, &o, |_| {}).await.unwrap_err().error;
    assert!(
        matches!(&e, SetupError::Permission { action, .. } if action == "ec2:DescribeImages"),
        "{e:?}"
    );
    assert!(e.to_string().contains("allow `ec2:DescribeImages`"));
}

#[tokio::test]
async fn unsupported_regions_are_refused_before_any_write() {
    let f = ready();
    let mut p = common::example_prereq();
    p.regions[0].region = "af-south-1".into();
    let e = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(&e.error, SetupError::Region { region, .. } if region == "af-south-1"));
    assert!(e.error.to_string().contains("enable-region"));
    p.regions[0].region = "mars-north-1".into();
    let e = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .unwrap_err();
    assert!(
        e.error.to_string().contains("not an AWS region"),
        "{}",
        e.error
    );
    assert!(f.writes().is_empty());
}

#[tokio::test]
async fn the_stack_lives_in_the_explicit_region() {
    let f = ready();
    let p = common::example_prereq();
    let o = meshfleet_aws::SetupOptions {
        stack_region: Some("us-east-1".into()),
        ..common::fast_options()
    };
    let r = run(&f, &p, &o, |_| {}).await.unwrap();
    assert!(f.stack("us-east-1", STACK).is_some());
    assert!(f.stack("eu-west-1", STACK).is_none());
    assert!(r.steps.iter().any(|s| s.kind == "region"
        && s.name == "us-east-1"
        && s.detail.contains("holds the IAM stack")));
}

#[tokio::test]
async fn names_taken_outside_the_stack_point_at_the_other_region() {
    let f = ready();
    let p = common::example_prereq();
    f.fail_next_create(
        "AWSIAMRoleNodes: nodes.cluster-api-provider-aws.sigs.k8s.io already exists in stack arn:aws:cloudformation:us-east-1:123456789012:stack/cluster-api-provider-aws-sigs-k8s-io/1",
    );
    let e = run(&f, &p, &common::fast_options(), |_| {})
        .await
        .unwrap_err();
    let msg = e.error.to_string();
    assert!(
        msg.contains("AWS_REGION") && msg.contains("this stack lives in eu-west-1"),
        "{msg}"
    );
    // The next run replaces the rolled-back stack and tries again (and says so when it works).
    let r = run(&f, &p, &common::fast_options(), |_| {}).await.unwrap();
    assert!(
        r.steps
            .last()
            .unwrap()
            .detail
            .starts_with("replaced a rolled-back stack")
    );
}
