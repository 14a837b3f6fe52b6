//! `setup` through the real SDK clients against moto in server mode (`moto[server]` 5.2.5): the
//! harness starts `moto_server` on a free loopback port per test, seeded with Talos AMIs owned
//! by Sidero's account (moto's `MOTO_AMIS_PATH`, which replaces its default image list in every
//! region). Without moto the tests say so loudly and pass; with `MESHFLEET_REQUIRE_MOTO=1` a
//! missing moto fails them.
//!
//! What moto cannot do, and where it is covered instead: CloudFormation operations complete
//! synchronously (no `*_IN_PROGRESS` to resume from: the fake covers that in tests/exec.rs), and
//! moto answers "No updates are to be performed" only for updates with parameters (tests/exec.rs
//! injects it).

mod common;

use std::process::Command;

use meshfleet_testkit::Moto;

use meshfleet_aws::api::AwsApi;
use meshfleet_aws::real::SdkApi;
use meshfleet_aws::{Action, AwsPrerequisites, SetupError, SetupOptions, StepEvent, run, template};

/// Start moto with Talos `versions` published in `regions`; `None` (after a loud message) when
/// moto is not installed.
fn moto(versions: &[&str], regions: &[&str]) -> Option<Moto> {
    moto_with(versions, regions, None)
}

/// [`moto`], with IAM enforced after the first `no_auth` requests
/// (`INITIAL_NO_AUTH_ACTION_COUNT`).
fn moto_with(versions: &[&str], regions: &[&str], no_auth: Option<u32>) -> Option<Moto> {
    let mut amis = Vec::new();
    for v in versions {
        for r in regions {
            amis.push(serde_json::json!({
                "ami_id": format!("ami-{:08x}{:09x}", amis.len() + 1, 0xabc),
                "name": format!("talos-{v}-{r}-amd64"),
                "owner_id": common::OWNER,
                "public": true,
                "virtualization_type": "hvm",
                "architecture": "x86_64",
                "state": "available",
                "root_device_type": "ebs",
                "root_device_name": "/dev/xvda",
                "description": "Talos test image",
            }));
        }
    }
    Moto::start_with(|dir| {
        let amis_path = dir.join("amis.json");
        std::fs::write(&amis_path, serde_json::to_vec(&amis).unwrap()).unwrap();
        let mut env = vec![("MOTO_AMIS_PATH".to_owned(), amis_path.display().to_string())];
        if let Some(n) = no_auth {
            env.push(("INITIAL_NO_AUTH_ACTION_COUNT".to_owned(), n.to_string()));
        }
        env
    })
}

fn options(m: &Moto) -> SetupOptions {
    SetupOptions {
        endpoint: Some(m.url.clone()),
        ..common::fast_options()
    }
}

async fn api(m: &Moto, p: &AwsPrerequisites) -> SdkApi {
    SdkApi::new(Some(&m.url), meshfleet_aws::desired::home_region(p, None))
        .await
        .expect("client")
}

/// Import a key pair through the SDK (moto keeps it per region).
async fn import_key(m: &Moto, region: &str, name: &str) {
    let cfg = meshfleet_testkit::aws_config(&m.url, region).await;
    aws_sdk_ec2::Client::new(&cfg)
        .import_key_pair()
        .key_name(name)
        .public_key_material(aws_sdk_ec2::primitives::Blob::new(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test",
        ))
        .send()
        .await
        .expect("import key pair");
}

/// Instance profiles as moto's IAM sees them (boto3 ships with moto).
fn instance_profiles(m: &Moto) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import boto3,sys\nc=boto3.client('iam',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id='t',aws_secret_access_key='t')\nfor p in c.list_instance_profiles()['InstanceProfiles']: print(p['InstanceProfileName'], ','.join(r['RoleName'] for r in p['Roles']))",
            &m.url,
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn create_then_unchanged_against_moto() {
    let Some(m) = moto(&["v1.13.9"], &["eu-west-1", "us-east-1"]) else {
        return;
    };
    let p = common::two_region_prereq();
    for r in ["eu-west-1", "us-east-1"] {
        import_key(&m, r, "ops").await;
    }
    let a = api(&m, &p).await;
    let r = run(&a, &p, &options(&m), |_| {})
        .await
        .expect("setup against moto");
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
    assert_eq!(r.steps[0].name, "123456789012");
    assert!(r.steps[3].detail.starts_with("ami-"), "{:?}", r.steps[3]);
    assert_eq!(
        instance_profiles(&m),
        [
            "control-plane.cluster-api-provider-aws.sigs.k8s.io control-plane.cluster-api-provider-aws.sigs.k8s.io",
            "controllers.cluster-api-provider-aws.sigs.k8s.io controllers.cluster-api-provider-aws.sigs.k8s.io",
            "nodes.cluster-api-provider-aws.sigs.k8s.io nodes.cluster-api-provider-aws.sigs.k8s.io",
        ]
    );
    let again = run(&a, &p, &options(&m), |_| {}).await.expect("second run");
    assert!(again.all_unchanged(), "{:#?}", again.steps);
}

#[tokio::test]
async fn dry_run_writes_nothing_to_moto() {
    let Some(m) = moto(&["v1.13.9"], &["eu-west-1"]) else {
        return;
    };
    let p = common::example_prereq();
    import_key(&m, "eu-west-1", "ops").await;
    let a = api(&m, &p).await;
    let o = SetupOptions {
        dry_run: true,
        ..options(&m)
    };
    let r = run(&a, &p, &o, |_| {}).await.expect("dry run");
    let s = r.steps.last().unwrap();
    assert_eq!(s.action, Action::Create);
    assert!(s.detail.starts_with("would create"), "{}", s.detail);
    assert_eq!(
        a.describe_stack("eu-west-1", template::STACK_NAME)
            .await
            .unwrap(),
        None
    );
    assert!(instance_profiles(&m).is_empty());
}

#[tokio::test]
async fn killed_after_create_then_resumed_against_moto() {
    let Some(m) = moto(&["v1.13.9"], &["eu-west-1"]) else {
        return;
    };
    let p = common::example_prereq();
    import_key(&m, "eu-west-1", "ops").await;
    let a = api(&m, &p).await;
    let o = options(&m);
    // Drop the run the moment CreateStack has been accepted (as a kill -9 would: no cleanup).
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
    let r = run(&a, &p, &o, |_| {}).await.expect("resume");
    let s = r.steps.last().unwrap();
    assert_eq!(
        (s.kind, s.action),
        ("iam-stack", Action::Unchanged),
        "{s:?}"
    );
    assert_eq!(instance_profiles(&m).len(), 3);
}

#[tokio::test]
async fn a_missing_ami_against_moto() {
    let Some(m) = moto(&["v1.13.9"], &["eu-west-1"]) else {
        return;
    };
    let mut p = common::example_prereq();
    p.regions[0].ami.name = "talos-v1.13.99-eu-west-1-amd64".into();
    let a = api(&m, &p).await;
    let e = run(&a, &p, &options(&m), |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.error, SetupError::AmiMissing { region, version, .. } if region == "eu-west-1" && version == "v1.13.99"),
        "{:?}",
        e.error
    );
    assert_eq!(
        a.describe_stack("eu-west-1", template::STACK_NAME)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_missing_key_pair_against_moto() {
    let Some(m) = moto(&["v1.13.9"], &["eu-west-1"]) else {
        return;
    };
    let p = common::example_prereq();
    let a = api(&m, &p).await;
    let e = run(&a, &p, &options(&m), |_| {}).await.unwrap_err();
    assert_eq!(
        e.error,
        SetupError::KeyPairMissing {
            name: "ops".into(),
            region: "eu-west-1".into()
        }
    );
    // Once the operator imports it, the run goes through.
    import_key(&m, "eu-west-1", "ops").await;
    run(&a, &p, &options(&m), |_| {})
        .await
        .expect("with the key pair");
}

#[tokio::test]
async fn an_opt_in_region_against_moto() {
    let Some(m) = moto(&["v1.13.9"], &["ap-east-1"]) else {
        return;
    };
    let mut p = common::example_prereq();
    p.regions[0].region = "ap-east-1".into();
    p.regions[0].ami.name = "talos-v1.13.9-ap-east-1-amd64".into();
    let a = api(&m, &p).await;
    let e = run(&a, &p, &options(&m), |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.error, SetupError::Region { region, .. } if region == "ap-east-1"),
        "{:?}",
        e.error
    );
}

/// A moto IAM user allowed `actions` only; returns its access key and secret.
fn limited_user(m: &Moto, actions: &[&str]) -> (String, String) {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    });
    let out = Command::new("python3")
        .args([
            "-c",
            "import boto3,sys\nc=boto3.client('iam',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id='t',aws_secret_access_key='t')\nc.create_user(UserName='ci')\nk=c.create_access_key(UserName='ci')['AccessKey']\nc.put_user_policy(UserName='ci',PolicyName='setup',PolicyDocument=sys.argv[2])\nprint(k['AccessKeyId'], k['SecretAccessKey'])",
            &m.url,
            &policy.to_string(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
}

#[tokio::test]
async fn a_missing_permission_names_the_action_against_moto() {
    // Three unauthenticated calls create the user, its key and its policy; then moto enforces
    // IAM for every request.
    let Some(m) = moto_with(&["v1.13.9"], &["eu-west-1"], Some(3)) else {
        return;
    };
    let mut p = common::example_prereq();
    p.ssh_key_name = None;
    // Not CloudFormation's writes: moto 5.2.5 checks SigV4 against its own re-encoding of the
    // form body, which differs from the SDK's for a template's characters
    // (`SignatureDoesNotMatch`); the denial of a read shows the same path.
    let (key, secret) = limited_user(&m, &["sts:GetCallerIdentity", "ec2:DescribeRegions"]);
    let a = SdkApi::with_credentials(Some(&m.url), "eu-west-1".into(), &key, &secret).await;
    let e = run(&a, &p, &options(&m), |_| {}).await.unwrap_err();
    assert!(
        matches!(&e.error, SetupError::Permission { action, .. } if action == "ec2:DescribeImages"),
        "{:?}",
        e.error
    );
    assert!(
        e.error.to_string().contains("allow `ec2:DescribeImages`"),
        "{}",
        e.error
    );
    assert_eq!(e.report.steps.last().map(|s| s.kind), Some("ami"));
    // Rejected keys are credentials errors, with the fix.
    let a = SdkApi::with_credentials(
        Some(&m.url),
        "eu-west-1".into(),
        "AKIAUNKNOWN000000000",
        "x",
    )
    .await;
    let e = run(&a, &p, &options(&m), |_| {}).await.unwrap_err();
    assert!(
        matches!(
            &e.error,
            SetupError::Credentials {
                what: "were rejected",
                ..
            }
        ),
        "{:?}",
        e.error
    );
}
