//! Harnesses the tests of several crates share (a dev-dependency only, never shipped).
//!
//! - [`Moto`]: a real `moto_server` (`moto[server]` from PyPI) per test on a free loopback
//!   port, killed on drop. Without moto a test is skipped loudly; with
//!   `MESHFLEET_REQUIRE_MOTO=1` (as CI sets) a missing moto is a failure.
//! - [`aws_config`]: an AWS SDK configuration for a plain-HTTP loopback endpoint (moto, or the
//!   simulator's AWS fake) with static test credentials.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server for one test, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// A scratch directory that lives as long as the server (for files it is started with).
    pub dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How moto is started here: `moto_server` on the PATH, else `python3 -m moto.server`.
fn moto_command() -> Option<Command> {
    let runs = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs(Command::new("moto_server").arg("--help")) {
        return Some(Command::new("moto_server"));
    }
    runs(Command::new("python3").args(["-c", "import moto.server"])).then(|| {
        let mut c = Command::new("python3");
        c.args(["-m", "moto.server"]);
        c
    })
}

impl Moto {
    /// Starts moto with no extra environment; see [`Moto::start_with`].
    pub fn start() -> Option<Moto> {
        Self::start_with(|_| Vec::new())
    }

    /// Starts moto with the environment `env` returns, given the server's scratch directory
    /// (where a test may write, e.g., `MOTO_AMIS_PATH`'s file), and waits until it listens.
    /// `None`, after a loud message, when moto is not installed; panics instead when
    /// `MESHFLEET_REQUIRE_MOTO=1`.
    pub fn start_with(env: impl FnOnce(&std::path::Path) -> Vec<(String, String)>) -> Option<Moto> {
        let Some(mut cmd) = moto_command() else {
            if std::env::var("MESHFLEET_REQUIRE_MOTO").as_deref() == Ok("1") {
                panic!(
                    "moto is required (MESHFLEET_REQUIRE_MOTO=1) but neither `moto_server` nor `python3 -m moto.server` runs: pip install 'moto[server]==5.2.5'"
                );
            }
            eprintln!(
                "SKIPPED: moto is not installed (pip install 'moto[server]==5.2.5'); set MESHFLEET_REQUIRE_MOTO=1 to make this a failure"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        cmd.envs(env(dir.path()));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let m = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not listen on {port} within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(m)
    }
}

/// An SDK configuration for a plain-HTTP loopback `endpoint` in `region`, with static test
/// credentials (moto and the simulator accept any).
pub async fn aws_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await
}
