//! A minimal etcd v3 client: mutual TLS with rustls, the KV `Range` and `Put` calls over gRPC.
//!
//! The connection is dialled by hand (TCP, then the TLS handshake) before tonic sees it, so every
//! failure can be named precisely: refused or unreachable address, a server certificate the CA
//! does not vouch for, or a client certificate the server refused (which, in TLS 1.3, the client
//! only learns from an alert on the first read after the handshake: the stream records it).

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The etcd v3 messages meshfleet uses, declared field for field from etcd's `rpc.proto` and
/// `kv.proto` (`etcdserverpb` / `mvccpb`). Declared by hand rather than generated so the build
/// needs no `protoc`; unknown fields are skipped by prost, so newer servers stay compatible.
pub mod pb {
    /// `etcdserverpb.ResponseHeader`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        /// The ID of the cluster that answered.
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        /// The ID of the member that answered.
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        /// The key-value store revision of the answer.
        #[prost(int64, tag = "3")]
        pub revision: i64,
        /// The raft term of the answer.
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    /// `mvccpb.KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        /// The key.
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        /// Revision of the last creation of the key.
        #[prost(int64, tag = "2")]
        pub create_revision: i64,
        /// Revision of the last modification of the key.
        #[prost(int64, tag = "3")]
        pub mod_revision: i64,
        /// Number of modifications since creation.
        #[prost(int64, tag = "4")]
        pub version: i64,
        /// The value.
        #[prost(bytes = "vec", tag = "5")]
        pub value: Vec<u8>,
        /// Lease attached to the key (0: none).
        #[prost(int64, tag = "6")]
        pub lease: i64,
    }

    /// `etcdserverpb.RangeRequest` (the fields meshfleet sets).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        /// The key to read (or the start of a range).
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        /// End of the range; empty for a single key.
        #[prost(bytes = "vec", tag = "2")]
        pub range_end: Vec<u8>,
        /// At most this many keys (0: no limit).
        #[prost(int64, tag = "3")]
        pub limit: i64,
    }

    /// `etcdserverpb.RangeResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        /// Response header.
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        /// The keys found.
        #[prost(message, repeated, tag = "2")]
        pub kvs: Vec<KeyValue>,
        /// More keys exist beyond `limit`.
        #[prost(bool, tag = "3")]
        pub more: bool,
        /// Number of keys in the range.
        #[prost(int64, tag = "4")]
        pub count: i64,
    }

    /// `etcdserverpb.PutRequest` (the fields meshfleet sets).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        /// The key.
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        /// The value.
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `etcdserverpb.PutResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        /// Response header.
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }
}

const RANGE_PATH: &str = "/etcdserverpb.KV/Range";
const PUT_PATH: &str = "/etcdserverpb.KV/Put";

/// The PEM material of a mutual-TLS client. `Debug` never shows the key.
#[derive(Clone)]
pub struct TlsMaterial {
    /// CA certificate(s) that must have signed the server's certificate (a bundle is fine).
    pub ca_pem: String,
    /// The client certificate (PEM, chain allowed).
    pub cert_pem: String,
    /// The client private key (PEM). Secret.
    pub key_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A parsed `https://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (2379 when the URL has none).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

impl Endpoint {
    /// Parse `https://host[:port]` (a trailing `/` is allowed). Only `https` makes sense: a
    /// clustermesh-apiserver always requires mutual TLS.
    pub fn parse(url: &str) -> Result<Self, EtcdError> {
        let bad = |why: &str| EtcdError::InvalidEndpoint {
            endpoint: url.to_owned(),
            reason: why.to_owned(),
        };
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            bad("it must start with `https://` (the clustermesh-apiserver requires mutual TLS)")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(bad(
                "it must be `https://host:port` without a path, query or user",
            ));
        }
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let (h, tail) = after
                .split_once(']')
                .ok_or_else(|| bad("the IPv6 address misses `]`"))?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| bad("expected `:port` after `]`"))?,
                ),
            };
            (h.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port =
            match port {
                None => 2379,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    bad(&format!("port `{p}` is not a number between 1 and 65535"))
                })?,
            };
        Ok(Self { host, port })
    }

    fn server_name(&self) -> Result<ServerName<'static>, EtcdError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        ServerName::try_from(self.host.clone()).map_err(|_| EtcdError::InvalidEndpoint {
            endpoint: self.to_string(),
            reason: format!("`{}` is neither an IP address nor a DNS name", self.host),
        })
    }
}

/// Why talking to etcd failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// The endpoint URL is unusable.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// As given.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The TLS material is unusable (bad PEM, key not matching the certificate…).
    #[error("{0}")]
    BadTlsMaterial(String),
    /// Nothing answered at the address.
    #[error(
        "cannot reach `{endpoint}`: {detail}\n  hint: check the address, the port and the firewall rules for the clustermesh-apiserver"
    )]
    Unreachable {
        /// Where.
        endpoint: String,
        /// The system's words.
        detail: String,
    },
    /// The operation did not finish in time.
    #[error("no answer from `{endpoint}` within {after:?} while {during}")]
    Timeout {
        /// Where.
        endpoint: String,
        /// The limit.
        after: Duration,
        /// Which step.
        during: String,
    },
    /// The server's certificate is not trusted.
    #[error("the server certificate of `{endpoint}` was rejected: {detail}")]
    ServerCertRejected {
        /// Where.
        endpoint: String,
        /// What is wrong with it, with a hint.
        detail: String,
    },
    /// The server refused our client certificate.
    #[error(
        "`{endpoint}` refused the client certificate (TLS alert `{alert}`): the server does not accept it; most often it was issued by a different CA than the one the server trusts, or it has expired{hint}"
    )]
    ClientCertRefused {
        /// Where.
        endpoint: String,
        /// The TLS alert received.
        alert: String,
        /// Extra hint, e.g. the issuer mismatch found locally (starts with a newline or is empty).
        hint: String,
    },
    /// Another TLS failure.
    #[error("TLS with `{endpoint}` failed: {detail}")]
    Tls {
        /// Where.
        endpoint: String,
        /// The TLS library's words.
        detail: String,
    },
    /// etcd answered with a gRPC error.
    #[error("`{endpoint}` answered `{code}`: {message}")]
    Rpc {
        /// Where.
        endpoint: String,
        /// The gRPC status code name.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The connection failed in another way.
    #[error("the connection to `{endpoint}` failed: {detail}")]
    Transport {
        /// Where.
        endpoint: String,
        /// Details.
        detail: String,
    },
}

/// A connected etcd v3 client.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoint: Endpoint,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    tls_failure: Arc<Mutex<Option<rustls::Error>>>,
    timeout: Duration,
    hint: String,
}

impl EtcdClient {
    /// Dial `endpoint` with mutual TLS and set up the gRPC channel; each step and each later call
    /// is bounded by `timeout`. `refusal_hint` is appended to a client-certificate refusal (the
    /// caller may know more, e.g. that the certificate's issuer differs from the CA file).
    pub async fn connect(
        endpoint: &Endpoint,
        tls: &TlsMaterial,
        timeout: Duration,
        refusal_hint: String,
    ) -> Result<Self, EtcdError> {
        let config = client_config(tls)?;
        let name = endpoint.server_name()?;
        let addr = (endpoint.host.as_str(), endpoint.port);
        let ep = endpoint.to_string();
        let timed_out = |during: &str| EtcdError::Timeout {
            endpoint: ep.clone(),
            after: timeout,
            during: during.to_owned(),
        };

        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connecting"))?
            .map_err(|e| EtcdError::Unreachable {
                endpoint: ep.clone(),
                detail: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls_stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| timed_out("in the TLS handshake"))?
            .map_err(|e| classify_io(&ep, &e, &refusal_hint))?;

        let mut tls_stream = tls_stream;
        let prefix = settle(&mut tls_stream, timeout.min(SETTLE_LIMIT))
            .await
            .map_err(|e| match e {
                Some(io) => classify_io(&ep, &io, &refusal_hint),
                None => EtcdError::ClientCertRefused {
                    endpoint: ep.clone(),
                    alert: "none, the connection was closed".into(),
                    hint: refusal_hint.clone(),
                },
            })?;

        let tls_failure = Arc::new(Mutex::new(None));
        let stream = Recording {
            inner: tls_stream,
            prefix,
            failure: tls_failure.clone(),
        };
        let slot = Arc::new(Mutex::new(Some(stream)));
        let one_shot = tower::service_fn(move |_uri: http::Uri| {
            let taken = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                taken.map(TokioIo::new).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the connection to the clustermesh-apiserver was lost",
                    )
                })
            }
        });
        // TLS is already established by hand above, so tonic must treat the stream as plain
        // HTTP/2: an `https` URI would make a TLS-enabled tonic build try to wrap it again.
        let uri = format!("http://{}:{}", uri_host(&endpoint.host), endpoint.port);
        let grpc_endpoint = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| EtcdError::InvalidEndpoint {
                endpoint: ep.clone(),
                reason: e.to_string(),
            })?
            .timeout(timeout);
        let channel = tokio::time::timeout(timeout, grpc_endpoint.connect_with_connector(one_shot))
            .await
            .map_err(|_| timed_out("starting HTTP/2"))?;
        let channel = match channel {
            Ok(c) => c,
            Err(e) => {
                return Err(recorded(&tls_failure, &ep, &refusal_hint)
                    .unwrap_or_else(|| classify_chain(&ep, &e, &refusal_hint)));
            }
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            grpc: tonic::client::Grpc::new(channel),
            tls_failure,
            timeout,
            hint: refusal_hint,
        })
    }

    /// Read one key; `Ok(None)` when it does not exist.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let req = pb::RangeRequest {
            key: key.to_vec(),
            range_end: Vec::new(),
            limit: 1,
        };
        let resp: pb::RangeResponse = self.unary(req, RANGE_PATH, "reading").await?;
        Ok(resp
            .kvs
            .into_iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value))
    }

    /// Write one key.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let req = pb::PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let _: pb::PutResponse = self.unary(req, PUT_PATH, "writing").await?;
        Ok(())
    }

    /// Call any unary etcd RPC by its full method path (e.g. `/etcdserverpb.Auth/AuthEnable`)
    /// with caller-declared prost messages; `during` names the step in a timeout message.
    pub async fn unary<Req, Resp>(
        &mut self,
        req: Req,
        path: &'static str,
        during: &str,
    ) -> Result<Resp, EtcdError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let ep = self.endpoint.to_string();
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        let call = async {
            self.grpc.ready().await.map_err(|e| {
                recorded(&self.tls_failure, &ep, &self.hint)
                    .unwrap_or_else(|| classify_chain(&ep, &e, &self.hint))
            })?;
            self.grpc
                .unary(tonic::Request::new(req), path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| {
                    recorded(&self.tls_failure, &ep, &self.hint)
                        .unwrap_or_else(|| classify_status(&ep, &status, &self.hint))
                })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| EtcdError::Timeout {
                endpoint: ep.clone(),
                after: self.timeout,
                during: during.to_owned(),
            })?
    }
}

fn uri_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn client_config(tls: &TlsMaterial) -> Result<rustls::ClientConfig, EtcdError> {
    let bad = |m: String| EtcdError::BadTlsMaterial(m);
    let mut roots = rustls::RootCertStore::empty();
    let mut n_roots = 0;
    for item in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
        let der = item.map_err(|e| bad(format!("the CA file is not valid PEM: {e}")))?;
        roots.add(der).map_err(|e| {
            bad(format!(
                "the CA file holds a certificate rustls cannot use: {e}"
            ))
        })?;
        n_roots += 1;
    }
    if n_roots == 0 {
        return Err(bad("the CA file holds no PEM certificate".into()));
    }
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("the client certificate file is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            "the client certificate file holds no PEM certificate".into()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|_| {
        bad("the client key file holds no PEM private key (PKCS#8, SEC1 or PKCS#1)".into())
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                bad("the client private key does not belong to the client certificate".into())
            }
            other => bad(format!(
                "the client certificate or key is unusable: {other}"
            )),
        })?;
    // gRPC needs HTTP/2, which is negotiated by ALPN over TLS.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// How long to wait after a TLS 1.3 handshake for the server's verdict on our certificate.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);

/// In TLS 1.3 the client finishes its handshake before the server has looked at the client
/// certificate; a refusal arrives later as an alert, often after the HTTP/2 layer has already
/// failed a write with a bare "broken pipe". So wait here for the verdict: an alert or a closed
/// connection means refused (`Err`), a session ticket (Go sends them only after accepting the
/// client certificate) or application data means accepted. Bytes read are returned so they can
/// be replayed to the HTTP/2 layer. A server that sends neither within `limit` is given the
/// benefit of the doubt.
async fn settle(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    limit: Duration,
) -> Result<Vec<u8>, Option<std::io::Error>> {
    if stream.get_ref().1.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; 16 * 1024];
    let verdict = tokio::time::timeout(
        limit,
        std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(rb.filled().len()))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending if stream.get_ref().1.tls13_tickets_received() > 0 => {
                    Poll::Ready(Ok(None))
                }
                Poll::Pending => Poll::Pending,
            }
        }),
    )
    .await;
    match verdict {
        Err(_) | Ok(Ok(None)) => Ok(Vec::new()),
        Ok(Ok(Some(0))) => Err(None),
        Ok(Ok(Some(n))) => Ok(buf[..n].to_vec()),
        Ok(Err(e)) => Err(Some(e)),
    }
}

/// A stream that replays bytes read while settling, and remembers the first TLS error seen on
/// it: the HTTP/2 layer above reports a closed connection without saying why, and the why (an
/// alert) is what the user needs.
struct Recording<S> {
    inner: S,
    prefix: Vec<u8>,
    failure: Arc<Mutex<Option<rustls::Error>>>,
}

impl<S> Recording<S> {
    fn note<T>(&self, r: &std::io::Result<T>) {
        if let Err(e) = r
            && let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
            && let Ok(mut slot) = self.failure.lock()
        {
            slot.get_or_insert_with(|| tls.clone());
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(res) = &r {
            self.note(res);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(res) = &r {
            self.note(res);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(res) = &r {
            self.note(res);
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn recorded(slot: &Mutex<Option<rustls::Error>>, ep: &str, hint: &str) -> Option<EtcdError> {
    let err = slot.lock().ok()?.clone()?;
    Some(classify_tls(ep, &err, hint))
}

fn classify_tls(ep: &str, err: &rustls::Error, hint: &str) -> EtcdError {
    use rustls::{AlertDescription as A, CertificateError as C};
    match err {
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::CertificateRequired
            | A::AccessDenied),
        ) => EtcdError::ClientCertRefused {
            endpoint: ep.to_owned(),
            alert: format!("{a:?}"),
            hint: hint.to_owned(),
        },
        rustls::Error::InvalidCertificate(c) => {
            let detail = match c {
                C::UnknownIssuer | C::BadSignature => {
                    "it is not signed by the CA given with `--ca`\n  hint: pass the mesh CA (or the rollover bundle) that signed the clustermesh-apiserver's certificate".to_owned()
                }
                C::Expired | C::ExpiredContext { .. } => {
                    "it has expired\n  hint: renew the clustermesh-apiserver's server certificate".to_owned()
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "it is not valid yet (check the clocks)".to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "it does not name the host that was dialled\n  hint: dial an address listed in its subject alternative names".to_owned()
                }
                other => format!("{other:?}"),
            };
            EtcdError::ServerCertRejected {
                endpoint: ep.to_owned(),
                detail,
            }
        }
        other => EtcdError::Tls {
            endpoint: ep.to_owned(),
            detail: other.to_string(),
        },
    }
}

fn classify_io(ep: &str, e: &std::io::Error, hint: &str) -> EtcdError {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return classify_tls(ep, tls, hint);
    }
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::HostUnreachable
        | K::NetworkUnreachable => EtcdError::Unreachable {
            endpoint: ep.to_owned(),
            detail: e.to_string(),
        },
        K::UnexpectedEof => EtcdError::Tls {
            endpoint: ep.to_owned(),
            detail:
                "the server closed the connection during the TLS handshake (is it a TLS endpoint?)"
                    .into(),
        },
        _ => EtcdError::Transport {
            endpoint: ep.to_owned(),
            detail: e.to_string(),
        },
    }
}

fn classify_chain(ep: &str, err: &(dyn StdError + 'static), hint: &str) -> EtcdError {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut words = Vec::new();
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return classify_tls(ep, tls, hint);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return classify_io(ep, io, hint);
        }
        words.push(e.to_string());
        cur = e.source();
    }
    words.dedup();
    EtcdError::Transport {
        endpoint: ep.to_owned(),
        detail: words.join(": "),
    }
}

fn classify_status(ep: &str, status: &tonic::Status, hint: &str) -> EtcdError {
    if let Some(src) = StdError::source(status) {
        let e = classify_chain(ep, src, hint);
        if !matches!(e, EtcdError::Transport { .. }) {
            return e;
        }
    }
    let mut message = status.message().to_owned();
    if status.code() == tonic::Code::PermissionDenied {
        // With etcd auth on (as in every clustermesh-apiserver), the certificate's common name
        // is the user; a certificate issued for another name gets exactly this answer.
        message.push_str(
            "\n  hint: etcd maps the client certificate's common name to its user; Cilium's remote clusters read as `remote`",
        );
    }
    EtcdError::Rpc {
        endpoint: ep.to_owned(),
        code: format!("{:?}", status.code()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("https://10.0.0.1:32379").unwrap(),
            Endpoint {
                host: "10.0.0.1".into(),
                port: 32379
            }
        );
        assert_eq!(
            Endpoint::parse("https://mesh.example/").unwrap(),
            Endpoint {
                host: "mesh.example".into(),
                port: 2379
            }
        );
        let v6 = Endpoint::parse("https://[::1]:2379").unwrap();
        assert_eq!(
            v6,
            Endpoint {
                host: "::1".into(),
                port: 2379
            }
        );
        assert_eq!(v6.to_string(), "https://[::1]:2379");
        for bad in [
            "http://a:1",
            "a:1",
            "https://",
            "https://a:0",
            "https://a:x",
            "https://a/b",
            "https://[::1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn messages_round_trip() {
        use prost::Message as _;
        let resp = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![pb::KeyValue {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }],
            more: false,
            count: 1,
        };
        let bytes = resp.encode_to_vec();
        assert_eq!(pb::RangeResponse::decode(bytes.as_slice()).unwrap(), resp);
        // Field 1 (key), wire type 2, length 1, "k": the encoding etcd expects.
        let req = pb::RangeRequest {
            key: b"k".to_vec(),
            range_end: vec![],
            limit: 0,
        };
        assert_eq!(req.encode_to_vec(), vec![0x0a, 0x01, b'k']);
    }

    #[test]
    fn tls_errors_are_named() {
        let refused = classify_tls(
            "e",
            &rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
            "",
        );
        assert!(
            refused
                .to_string()
                .contains("refused the client certificate")
        );
        let unknown = classify_tls(
            "e",
            &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "",
        );
        assert!(unknown.to_string().contains("not signed by the CA"));
    }

    #[test]
    fn debug_hides_the_key() {
        let m = TlsMaterial {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "SECRET".into(),
        };
        assert!(!format!("{m:?}").contains("SECRET"));
    }
}
