//! A real etcd for tests: started on free loopback ports with mutual TLS and
//! `--client-cert-auth`, using a CA and a serving certificate issued by [`crate::pki`], killed
//! when dropped. Used by this crate's and the CLI's integration tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::etcd::{Endpoint, EtcdClient, TlsMaterial};
use crate::pki::{self, CaMaterial, CertKind, CertRequest, IssuedCert};

/// How long [`TestEtcd::start`] waits for etcd to answer.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(20);

/// The environment variable that turns a missing `etcd` binary from a skip into a failure.
pub const REQUIRE_ETCD_ENV: &str = "MESHFLEET_REQUIRE_ETCD";

/// The `etcd` executable on `PATH`, if any.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

/// Whether the environment demands a real etcd (`MESHFLEET_REQUIRE_ETCD=1`).
pub fn etcd_required() -> bool {
    std::env::var(REQUIRE_ETCD_ENV).is_ok_and(|v| v == "1")
}

/// A running etcd. Dropping it kills the process and removes its data.
#[derive(Debug)]
pub struct TestEtcd {
    child: Child,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The CA that signed the server certificate (and that the server trusts for clients).
    pub ca: CaMaterial,
    /// A client certificate from `ca`, used to seed keys.
    pub client: IssuedCert,
}

impl TestEtcd {
    /// Start etcd trusting `ca`. `Ok(None)` when no `etcd` binary is installed.
    pub fn start(ca: &CaMaterial) -> Result<Option<Self>, String> {
        let Some(binary) = etcd_binary() else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        let server = pki::issue(
            ca,
            &CertRequest {
                common_name: "test-etcd".into(),
                kind: CertKind::Server,
                dns_names: vec!["localhost".into()],
                ips: vec!["127.0.0.1".parse().map_err(|e| format!("{e}"))?],
                days: 2,
            },
            now,
        )
        .map_err(|e| e.to_string())?;
        let client = pki::issue(
            ca,
            &CertRequest {
                common_name: "root".into(),
                kind: CertKind::Client,
                dns_names: vec![],
                ips: vec![],
                days: 2,
            },
            now,
        )
        .map_err(|e| e.to_string())?;
        // The ports were free a moment ago but another process may take one before etcd binds
        // it; etcd then exits at once, and a fresh pair of ports is tried.
        let mut last = String::new();
        for _attempt in 0..3 {
            match Self::launch(&binary, ca, &server, &client)? {
                Ok(etcd) => return Ok(Some(etcd)),
                Err(exited) => last = exited,
            }
        }
        Err(last)
    }

    /// One start-up: `Ok(Err(log))` when etcd exited during start-up (retryable).
    fn launch(
        binary: &Path,
        ca: &CaMaterial,
        server: &IssuedCert,
        client: &IssuedCert,
    ) -> Result<Result<Self, String>, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.path().join(name);
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            Ok(p)
        };
        let ca_file = write("ca.crt", &ca.cert_pem)?;
        let cert_file = write("server.crt", &server.cert_pem)?;
        let key_file = write("server.key", &server.key_pem)?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(binary)
            .arg("--name=meshfleet-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=meshfleet-test={peer_url}"))
            .arg(format!("--cert-file={}", cert_file.display()))
            .arg(format!("--key-file={}", key_file.display()))
            .arg(format!("--trusted-ca-file={}", ca_file.display()))
            .arg("--client-cert-auth")
            .env_remove("ETCDCTL_API")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut etcd = Self {
            child,
            dir,
            endpoint: client_url,
            ca: ca.clone(),
            client: client.clone(),
        };
        match etcd.wait_ready() {
            Ok(()) => Ok(Ok(etcd)),
            Err(Startup::Exited(log)) => Ok(Err(log)),
            Err(Startup::Failed(e)) => Err(e),
        }
    }

    /// TLS material for the seeding client.
    pub fn client_tls(&self) -> TlsMaterial {
        TlsMaterial {
            ca_pem: self.ca.cert_pem.clone(),
            cert_pem: self.client.cert_pem.clone(),
            key_pem: self.client.key_pem.clone(),
        }
    }

    /// The directory holding etcd's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines etcd wrote, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Write a key with the seeding client.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let rt = runtime()?;
        let endpoint = Endpoint::parse(&self.endpoint).map_err(|e| e.to_string())?;
        let tls = self.client_tls();
        rt.block_on(async {
            let mut c = EtcdClient::connect(&endpoint, &tls, Duration::from_secs(5), String::new())
                .await
                .map_err(|e| e.to_string())?;
            c.put(key.as_bytes(), value)
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Turn on etcd authentication the way a clustermesh-apiserver runs it: users named after
    /// client-certificate common names, `root` with the root role, and `remote` allowed only to
    /// read the `cilium/` prefix. Afterwards a certificate whose common name is no etcd user can
    /// still complete TLS but every request is refused by etcd itself.
    pub fn enable_clustermesh_auth(&self) -> Result<(), String> {
        use auth_pb::*;
        let rt = runtime()?;
        let endpoint = Endpoint::parse(&self.endpoint).map_err(|e| e.to_string())?;
        let tls = self.client_tls();
        rt.block_on(async {
            let mut c = EtcdClient::connect(&endpoint, &tls, Duration::from_secs(5), String::new())
                .await
                .map_err(|e| e.to_string())?;
            let step = |e: crate::etcd::EtcdError| e.to_string();
            // A password is set only because etcd before 3.4 has no password-less users; with
            // certificate auth the common name alone identifies the user.
            for user in ["root", "remote"] {
                let req = UserAdd {
                    name: user.into(),
                    password: format!("unused-{user}-{}", std::process::id()),
                };
                let _: HeaderOnly = c
                    .unary(req, "/etcdserverpb.Auth/UserAdd", "adding a user")
                    .await
                    .map_err(step)?;
            }
            for role in ["root", "remote"] {
                let _: HeaderOnly = c
                    .unary(
                        RoleAdd { name: role.into() },
                        "/etcdserverpb.Auth/RoleAdd",
                        "adding a role",
                    )
                    .await
                    .map_err(step)?;
            }
            let grant = RoleGrantPermission {
                name: "remote".into(),
                perm: Some(Permission {
                    perm_type: 0, // READ
                    key: b"cilium/".to_vec(),
                    range_end: b"cilium0".to_vec(),
                }),
            };
            let _: HeaderOnly = c
                .unary(
                    grant,
                    "/etcdserverpb.Auth/RoleGrantPermission",
                    "granting a permission",
                )
                .await
                .map_err(step)?;
            for user in ["root", "remote"] {
                let req = UserGrantRole {
                    user: user.into(),
                    role: user.into(),
                };
                let _: HeaderOnly = c
                    .unary(req, "/etcdserverpb.Auth/UserGrantRole", "granting a role")
                    .await
                    .map_err(step)?;
            }
            let _: HeaderOnly = c
                .unary(
                    AuthEnable {},
                    "/etcdserverpb.Auth/AuthEnable",
                    "enabling auth",
                )
                .await
                .map_err(step)?;
            Ok(())
        })
    }

    fn wait_ready(&mut self) -> Result<(), Startup> {
        let rt = runtime().map_err(Startup::Failed)?;
        let endpoint =
            Endpoint::parse(&self.endpoint).map_err(|e| Startup::Failed(e.to_string()))?;
        let tls = self.client_tls();
        let deadline = Instant::now() + STARTUP_LIMIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Startup::Exited(format!(
                    "etcd exited with {status} during start-up:\n{}",
                    self.log_tail()
                )));
            }
            let attempt = rt.block_on(async {
                let mut c =
                    EtcdClient::connect(&endpoint, &tls, Duration::from_secs(2), String::new())
                        .await?;
                c.get(b"meshfleet/readiness").await
            });
            match attempt {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(Startup::Failed(format!(
            "etcd did not answer within {STARTUP_LIMIT:?} (last error: {last}):\n{}",
            self.log_tail()
        )))
    }
}

enum Startup {
    /// etcd exited (e.g. a port was taken meanwhile): worth another try.
    Exited(String),
    /// Anything else.
    Failed(String),
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The etcd auth messages the test harness needs (`etcdserverpb` / `authpb`), field for field.
mod auth_pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderOnly {
        #[prost(message, optional, tag = "1")]
        pub header: Option<crate::etcd::pb::ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserAdd {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub password: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RoleAdd {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Permission {
        #[prost(int32, tag = "1")]
        pub perm_type: i32,
        #[prost(bytes = "vec", tag = "2")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub range_end: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RoleGrantPermission {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub perm: Option<Permission>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UserGrantRole {
        #[prost(string, tag = "1")]
        pub user: String,
        #[prost(string, tag = "2")]
        pub role: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AuthEnable {}
}
