//! `up --sim`: the embedded simulator as this run's management cluster.
//!
//! The simulator runs in-process (`meshfleet_sim::start`) on the run's own runtime rather than
//! as a child process: it lives exactly as long as the run, so an interrupted or killed `up`
//! never leaves a server behind. Its state directory is kept beside the fleet file
//! (`.meshfleet/sim/<fleet>/state`), so a re-run starts the simulator on the same objects and
//! converges instead of starting over; `meshfleet sim serve --state` on that directory serves
//! the same management cluster between runs (for `status`, `kubeconfig`, `down`, `kubectl`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The address the simulated management cluster dials Talos from when the fleet names no
/// egress CIDR (TEST-NET-1): the fleet then opens 50000 to nobody, and bootstrap stalls as it
/// would for real.
pub const DEFAULT_EGRESS_IP: &str = "192.0.2.10";

/// Environment variable with the simulated-time factor of `up --sim` (as for `sim serve`).
pub const SPEED_ENV: &str = "MESHFLEET_SIM_SPEED";

/// Where `up --sim` keeps the simulator of a fleet: `<fleet dir>/.meshfleet/sim/<fleet>`.
pub fn sim_dir(fleet_file: &Path, fleet: &str) -> PathBuf {
    let dir = match fleet_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.join(".meshfleet").join("sim").join(fleet)
}

/// The first address of the first egress CIDR, or [`DEFAULT_EGRESS_IP`].
pub fn egress_ip(cidrs: &[String]) -> anyhow::Result<IpAddr> {
    match cidrs.first() {
        Some(c) => {
            let net: ipnet::IpNet = c.parse().with_context(|| {
                format!("`spec.management.egressCIDRs[0]` is `{c}`, not a CIDR")
            })?;
            Ok(net.network())
        }
        None => Ok(DEFAULT_EGRESS_IP.parse()?),
    }
}

/// The speed factor from [`SPEED_ENV`] (default 1).
pub fn speed() -> anyhow::Result<f64> {
    match std::env::var(SPEED_ENV) {
        Ok(s) => {
            let v: f64 = s
                .trim()
                .parse()
                .map_err(|_| crate::ctx::Invalid::new(format!("`{SPEED_ENV}` is `{s}`, not a number\n  hint: 1 is real time, 10 is ten times faster")))?;
            Ok(v)
        }
        Err(_) => Ok(1.0),
    }
}

/// Start the simulator in-process on a free local port with its state in `dir/state`; it
/// writes `dir/kubeconfig` before returning.
pub async fn start(
    dir: &Path,
    egress: IpAddr,
    speed: f64,
) -> anyhow::Result<(meshfleet_sim::Simulator, PathBuf)> {
    let kubeconfig = dir.join("kubeconfig");
    let mut cfg = meshfleet_sim::SimConfig::new(
        "127.0.0.1:0".parse().context("listen address")?,
        kubeconfig.clone(),
    );
    cfg.speed = speed;
    cfg.egress_ip = Some(egress);
    cfg.state_dir = Some(dir.join("state"));
    // Separate node networks (the sim's interconnect model) unless opted out, as
    // `sim serve --shared-networks`.
    cfg.separate_networks = !std::env::var("MESHFLEET_SIM_SHARED_NETWORKS")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true"));
    let sim = meshfleet_sim::start(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the simulator: {e}"))?;
    Ok((sim, kubeconfig))
}

/// The management cluster of a command that reads a running fleet: with `--sim`, the state
/// `up --sim` kept beside the fleet file, served in-process for this run; otherwise the
/// kubeconfig. [`Mgmt::close`] stops the simulator (its state stays).
pub struct Mgmt {
    /// The client.
    pub kube: meshfleet_kube::Kube,
    sim: Option<meshfleet_sim::Simulator>,
}

impl Mgmt {
    /// Connect (serving the kept simulator state first when `sim`).
    pub async fn open(
        ctx: &crate::ctx::Ctx,
        fleet_file: &Path,
        fleet: &meshfleet_spec::Fleet,
        sim: bool,
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let name = &fleet.metadata.name;
        let dir = sim_dir(fleet_file, name);
        if sim && !dir.join("state").is_dir() {
            return Err(crate::ctx::Invalid::new(format!(
                "`--sim`: no simulator state for fleet `{name}` at `{}`\n  hint: create the fleet on the embedded simulator first with `meshfleet up --sim -f {}`",
                dir.join("state").display(),
                fleet_file.display()
            )));
        }
        let (simulator, kubeconfig) = if sim {
            let egress = egress_ip(&fleet.spec.management.egress_cidrs)?;
            let (s, kc) = start(&dir, egress, speed()?).await?;
            ctx.info(&format!(
                "simulator: serving the state kept in `{}` at https://{}",
                dir.join("state").display(),
                s.addr()
            ));
            (Some(s), Some(kc))
        } else {
            (None, kubeconfig.map(Path::to_path_buf))
        };
        // The concrete command when `up --sim` left a state here, the general form otherwise.
        let serve = if dir.join("state").is_dir() {
            format!(
                "meshfleet sim serve --state {} --kubeconfig {}",
                dir.join("state").display(),
                dir.join("kubeconfig").display()
            )
        } else {
            "meshfleet sim serve --state DIR --kubeconfig FILE".to_string()
        };
        let kube = crate::cmd::common::connect_with(
            kubeconfig.as_deref(),
            &format!("pass `--kubeconfig FILE`, `--sim` for the simulator kept by `up --sim`, or serve that state with `{serve}`"),
            &format!("is it running? for the simulator, start it with `{serve}` (or pass `--sim`)"),
        )
        .await;
        match kube {
            Ok(kube) => Ok(Self {
                kube,
                sim: simulator,
            }),
            Err(e) => {
                if let Some(s) = simulator {
                    let _ = s.shutdown().await;
                }
                Err(e)
            }
        }
    }

    /// The Google and AWS API endpoints of the simulator this command serves, if any.
    pub fn cloud_urls(&self) -> Option<(String, String)> {
        self.sim
            .as_ref()
            .map(|s| (s.gcp_url().to_string(), s.aws_url().to_string()))
    }

    /// Stop the simulator, if one was started.
    pub async fn close(self, ctx: &crate::ctx::Ctx) {
        if let Some(s) = self.sim
            && let Err(e) = s.shutdown().await
        {
            ctx.warn(&format!("the simulator did not stop cleanly: {e}"));
        }
    }
}

/// What `up --sim` uploads as the Talos GCP disk: the simulated project only checks that the
/// image's source object exists, so a few bytes that say what they are stand in for the
/// Image Factory download (which needs the internet and is hundreds of megabytes).
const SIM_IMAGE: &[u8] = b"meshfleet simulator: stands in for the Talos GCP raw disk image\n";

/// The simulated counterpart of `meshfleet gcp setup`: converge the embedded simulator's GCP
/// project (APIs, CAPG's account, bucket, image, network, subnets, NAT, firewalls) so its CAPG
/// finds what a real project would need. Returns how many steps changed something.
pub async fn gcp_setup(
    sim: &meshfleet_sim::Simulator,
    dir: &Path,
    prereq: &meshfleet_gcp::GcpPrerequisites,
) -> anyhow::Result<usize> {
    let image = dir.join("talos-gcp-sim.raw.tar.gz");
    if !image.exists() {
        std::fs::write(&image, SIM_IMAGE)
            .with_context(|| format!("cannot write `{}`", image.display()))?;
    }
    let opts = meshfleet_gcp::SetupOptions {
        endpoint: Some(sim.gcp_url().to_string()),
        dry_run: false,
        image_source: Some(image.display().to_string()),
        key_dir: dir.join("gcp"),
        retry: Default::default(),
    };
    let report = meshfleet_gcp::setup(prereq, &opts, |_| {})
        .await
        .map_err(|f| anyhow::anyhow!("simulated GCP setup failed: {}", f.error))?;
    // What a user does next on a real management cluster: hand the key to CAPG.
    let key = opts.key_dir.join(format!(
        "{}-{}.json",
        prereq.project, prereq.service_account.name
    ));
    let bytes = std::fs::read(&key)
        .with_context(|| format!("cannot read CAPG's key `{}`", key.display()))?;
    install_credentials(dir, &meshfleet_lifecycle::credentials::GCP, &bytes).await?;
    Ok(report
        .steps
        .iter()
        .filter(|s| s.action != meshfleet_gcp::Action::Unchanged)
        .count())
}

/// The access key of the simulated AWS account's credentials profile (the fake checks none).
pub(crate) const SIM_AWS_KEY: &str = "meshfleet-sim";

/// Write a provider's credentials Secret into the simulated management cluster through its
/// API, as `clusterctl init` does from `<CLOUD>_B64ENCODED_CREDENTIALS` on a real one.
async fn install_credentials(
    dir: &Path,
    c: &meshfleet_lifecycle::credentials::CredentialsSecret,
    value: &[u8],
) -> anyhow::Result<()> {
    let kube = meshfleet_kube::Kube::from_path(Some(&dir.join("kubeconfig")))
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the simulator: {e}"))?;
    meshfleet_lifecycle::credentials::install(&kube, c, c.default_namespace, value, false)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot write `{}/{}` into the simulator: {e}",
                c.default_namespace,
                c.name
            )
        })?;
    Ok(())
}

/// The simulated counterpart of `meshfleet aws setup`. The simulated account first gets what
/// a real one already has: Sidero's public Talos AMI of the fleet's version in each region (the
/// simulator holds no catalogue of releases) and the key pair the fleet names (a user creates it;
/// `aws setup` only checks it). Then `aws setup` runs against the simulator's AWS endpoint, so
/// its CAPA finds the instance profiles it needs. Returns how many steps changed something.
pub async fn aws_setup(
    sim: &meshfleet_sim::Simulator,
    dir: &Path,
    prereq: &meshfleet_render::AwsPrerequisites,
) -> anyhow::Result<usize> {
    let aws = &sim.world().aws;
    for r in &prereq.regions {
        aws.publish_image(&r.region, r.ami.owner, &r.ami.name);
        if let Some(k) = &prereq.ssh_key_name {
            aws.add_key_pair(&r.region, k);
        }
    }
    let opts = meshfleet_aws::SetupOptions {
        endpoint: Some(sim.aws_url().to_string()),
        dry_run: false,
        stack_region: None,
        // The simulator's stacks settle in 300 ms divided by its speed.
        retry: meshfleet_aws::RetryPolicy {
            poll: std::time::Duration::from_millis(100),
            ..Default::default()
        },
    };
    let report = meshfleet_aws::setup(prereq, &opts, |_| {})
        .await
        .map_err(|f| anyhow::anyhow!("simulated AWS setup failed: {}", f.error))?;
    // The simulated account takes any key; the profile has the form
    // `clusterawsadm bootstrap credentials encode-as-profile` prints.
    let profile = format!(
        "[default]\naws_access_key_id = {SIM_AWS_KEY}\naws_secret_access_key = {SIM_AWS_KEY}\nregion = {}\n",
        prereq
            .regions
            .first()
            .map(|r| r.region.as_str())
            .unwrap_or("us-east-1")
    );
    install_credentials(
        dir,
        &meshfleet_lifecycle::credentials::AWS,
        profile.as_bytes(),
    )
    .await?;
    Ok(report
        .steps
        .iter()
        .filter(|s| s.action != meshfleet_aws::Action::Unchanged)
        .count())
}

/// The simulated counterpart of `meshfleet net setup`: once the simulated CAPA has made the
/// AWS VPCs the links attach to, run the fleet's link steps against the simulator's Google and
/// AWS APIs (the same client code as against the clouds). Until then every run stops at the
/// first step that needs a VPC, and is retried. Returns how many steps changed something.
pub async fn net_setup(
    sim: &meshfleet_sim::Simulator,
    fleet_dir: &Path,
    fleet: &meshfleet_spec::Fleet,
    plan: &meshfleet_plan::Plan,
) -> anyhow::Result<usize> {
    let ep = meshfleet_net::setup::Endpoints {
        gcp: Some(sim.gcp_url().to_string()),
        aws: Some(sim.aws_url().to_string()),
        aws_static_key: Some(SIM_AWS_KEY.to_owned()),
    };
    let opts = meshfleet_net::exec::Options {
        attempts: 4,
        backoff: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    loop {
        match meshfleet_net::setup::run(fleet, plan, fleet_dir, &ep, &opts).await {
            Ok(report) => {
                return Ok(report
                    .steps
                    .iter()
                    .filter(|s| s.action != meshfleet_net::exec::Action::Unchanged)
                    .count());
            }
            Err(meshfleet_net::setup::SetupError::Failed(f)) if f.waits_for_capa() => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("simulated net setup failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_is_the_first_address_of_the_first_cidr() {
        assert_eq!(
            egress_ip(&["203.0.113.0/24".into(), "1.2.3.4/32".into()])
                .unwrap()
                .to_string(),
            "203.0.113.0"
        );
        assert_eq!(
            egress_ip(&["203.0.113.10/32".into()]).unwrap().to_string(),
            "203.0.113.10"
        );
        assert_eq!(egress_ip(&[]).unwrap().to_string(), DEFAULT_EGRESS_IP);
        assert!(egress_ip(&["nope".into()]).is_err());
        assert_eq!(
            sim_dir(Path::new("x/fleet.yaml"), "f"),
            PathBuf::from("x/.meshfleet/sim/f")
        );
    }
}
