//! `setup` through the real SDK clients against the simulator's AWS fake (the same flows as
//! against moto, plus what moto cannot show: a stack in progress that a re-run waits for), and
//! the fake's hook for the simulated CAPA.

mod common;

use std::sync::Arc;
use std::time::Duration;

use meshfleet_aws::api::AwsApi;
use meshfleet_aws::real::SdkApi;
use meshfleet_aws::{Action, SetupError, SetupOptions, StepEvent, run, template};
use meshfleet_sim::aws::{Aws, serve};

const PROFILE: &str = "nodes.cluster-api-provider-aws.sigs.k8s.io";

/// The fake on a free port; `speed` scales its 300 ms stack operations.
struct Fake {
    aws: Arc<Aws>,
    url: String,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn fake(speed: f64) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let aws = Arc::new(Aws::open(None, url.clone(), speed).unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(aws.clone(), listener, rx));
    Fake {
        aws,
        url,
        _stop: stop,
    }
}

fn options(f: &Fake) -> SetupOptions {
    SetupOptions {
        endpoint: Some(f.url.clone()),
        ..common::fast_options()
    }
}

fn ready(f: &Fake, p: &meshfleet_aws::AwsPrerequisites) {
    for r in &p.regions {
        f.aws.publish_image(&r.region, common::OWNER, &r.ami.name);
        f.aws.add_key_pair(&r.region, "ops");
    }
}

async fn api(f: &Fake) -> SdkApi {
    SdkApi::new(Some(&f.url), "eu-west-1".into()).await.unwrap()
}

#[tokio::test]
async fn create_then_unchanged_and_capa_can_launch() {
    let f = fake(50.0).await;
    let p = common::two_region_prereq();
    ready(&f, &p);
    let ami = &p.regions[0].ami;
    assert!(
        f.aws
            .capa_missing("eu-west-1", ami.owner, &ami.name, Some(PROFILE))
            .unwrap()
            .contains("Invalid IAM Instance Profile")
    );
    let a = api(&f).await;
    let r = run(&a, &p, &options(&f), |_| {})
        .await
        .expect("setup against the fake");
    let kinds: Vec<_> = r.steps.iter().map(|s| (s.kind, s.action)).collect();
    assert_eq!(
        kinds,
        [
            ("account", Action::Unchanged),
            ("region", Action::Unchanged),
            ("region", Action::Unchanged),
            ("ami", Action::Unchanged),
            ("ami", Action::Unchanged),
            ("key-pair", Action::Unchanged),
            ("key-pair", Action::Unchanged),
            ("iam-stack", Action::Create),
        ]
    );
    assert!(r.steps[3].detail.starts_with("ami-"));
    assert_eq!(
        f.aws
            .capa_missing("eu-west-1", ami.owner, &ami.name, Some(PROFILE)),
        None
    );
    let again = run(&a, &p, &options(&f), |_| {}).await.expect("second run");
    assert!(again.all_unchanged(), "{:#?}", again.steps);
}

#[tokio::test]
async fn dry_run_writes_nothing_to_the_fake() {
    let f = fake(50.0).await;
    let p = common::example_prereq();
    ready(&f, &p);
    let a = api(&f).await;
    let o = SetupOptions {
        dry_run: true,
        ..options(&f)
    };
    let r = run(&a, &p, &o, |_| {}).await.expect("dry run");
    assert!(r.steps.last().unwrap().detail.starts_with("would create"));
    assert_eq!(
        a.describe_stack("eu-west-1", template::STACK_NAME)
            .await
            .unwrap(),
        None
    );
    assert_eq!(f.aws.snapshot()["stacks"], serde_json::json!({}));
}

#[tokio::test]
async fn killed_while_in_progress_then_resumed() {
    // 300 ms / 0.5 = 600 ms in progress.
    let f = fake(0.5).await;
    let p = common::example_prereq();
    ready(&f, &p);
    let a = api(&f).await;
    let o = SetupOptions {
        retry: meshfleet_aws::RetryPolicy {
            poll: Duration::from_millis(50),
            ..common::fast_options().retry
        },
        ..options(&f)
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut tx = Some(tx);
    let run1 = run(&a, &p, &o, |e| {
        if let StepEvent::Waiting { .. } = e
            && let Some(tx) = tx.take()
        {
            let _ = tx.send(());
        }
    });
    tokio::select! {
        biased;
        _ = rx => {}
        _ = run1 => panic!("the run finished before it was interrupted"),
    }
    let st = a
        .describe_stack("eu-west-1", template::STACK_NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status, "CREATE_IN_PROGRESS");
    let mut waited = false;
    let r = run(&a, &p, &o, |e| {
        waited |= matches!(e, StepEvent::Waiting { .. })
    })
    .await
    .expect("resume");
    assert!(waited, "the re-run did not wait for the stack in progress");
    let s = r.steps.last().unwrap();
    assert_eq!(
        (s.kind, s.action),
        ("iam-stack", Action::Unchanged),
        "{s:?}"
    );
    let st = a
        .describe_stack("eu-west-1", template::STACK_NAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status, "CREATE_COMPLETE");
}

#[tokio::test]
async fn missing_ami_and_key_pair_against_the_fake() {
    let f = fake(50.0).await;
    let p = common::example_prereq();
    let a = api(&f).await;
    let e = run(&a, &p, &options(&f), |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.error, SetupError::AmiMissing { region, version, .. } if region == "eu-west-1" && version == "v1.13.9"),
        "{:?}",
        e.error
    );
    let ami = &p.regions[0].ami;
    assert!(
        f.aws
            .capa_missing("eu-west-1", ami.owner, &ami.name, None)
            .unwrap()
            .contains("found no AMIs")
    );
    f.aws.publish_image("eu-west-1", common::OWNER, &ami.name);
    let e = run(&a, &p, &options(&f), |_| {}).await.unwrap_err();
    assert_eq!(
        e.error,
        SetupError::KeyPairMissing {
            name: "ops".into(),
            region: "eu-west-1".into()
        }
    );
    assert_eq!(f.aws.snapshot()["stacks"], serde_json::json!({}));
}

#[tokio::test]
async fn an_updated_template_is_applied_and_no_updates_is_unchanged() {
    let f = fake(50.0).await;
    let p = common::example_prereq();
    ready(&f, &p);
    let a = api(&f).await;
    // An older stack (one instance profile only) in place.
    let old = r#"{"Resources":{"AWSIAMRoleNodes":{"Type":"AWS::IAM::Role","Properties":{"RoleName":"nodes.cluster-api-provider-aws.sigs.k8s.io"}}}}"#;
    let mut req = meshfleet_aws::desired::stack_request(&p);
    req.template_body = old.to_owned();
    a.create_stack("eu-west-1", &req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = run(&a, &p, &options(&f), |_| {}).await.expect("update");
    let s = r.steps.last().unwrap();
    assert_eq!(s.action, Action::Update, "{s:?}");
    assert!(
        s.detail.contains("add AWSIAMInstanceProfileNodes"),
        "{}",
        s.detail
    );
    // The fake answers an identical update the way CloudFormation does.
    let same = meshfleet_aws::desired::stack_request(&p);
    let e = a.update_stack("eu-west-1", &same).await.unwrap_err();
    assert!(e.is_no_updates(), "{e}");
    // Without CAPABILITY_NAMED_IAM the create is refused, as CloudFormation refuses it.
    let mut bare = same.clone();
    bare.stack_name = "other".into();
    bare.capabilities.clear();
    let e = a.create_stack("eu-west-1", &bare).await.unwrap_err();
    assert_eq!(e.code, "InsufficientCapabilitiesException");
}

#[tokio::test]
async fn an_opt_in_region_against_the_fake() {
    let f = fake(50.0).await;
    let mut p = common::example_prereq();
    p.regions[0].region = "me-south-1".into();
    let a = api(&f).await;
    let e = run(&a, &p, &options(&f), |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.error, SetupError::Region { region, .. } if region == "me-south-1"),
        "{:?}",
        e.error
    );
}
