//! The client: resolution of kinds through discovery, and the verbs `up`, `status` and `down` use.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Client, Config};
use serde_json::Value;

use crate::{KubeError, Retry};

/// The field manager of every server-side apply meshfleet makes.
pub const FIELD_MANAGER: &str = "meshfleet";

/// Which object a call is about: enough to find it and to name it in messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// `group/version` or `version`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (absent for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The reference of a JSON object (apiVersion, kind, metadata.namespace, metadata.name).
    pub fn of(obj: &Value) -> Result<Self, KubeError> {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str);
        let missing = |what: &str| KubeError::Malformed {
            message: format!("`{what}` is missing"),
        };
        Ok(Self {
            api_version: s("/apiVersion")
                .ok_or_else(|| missing("apiVersion"))?
                .to_string(),
            kind: s("/kind").ok_or_else(|| missing("kind"))?.to_string(),
            namespace: s("/metadata/namespace").map(str::to_string),
            name: s("/metadata/name")
                .ok_or_else(|| missing("metadata.name"))?
                .to_string(),
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} `{ns}/{}`", self.kind, self.name),
            None => write!(f, "{} `{}`", self.kind, self.name),
        }
    }
}

type Resolved = (ApiResource, ApiCapabilities);

/// A connection to one Kubernetes API (the management cluster or a workload cluster).
#[derive(Clone)]
pub struct Kube {
    client: Client,
    /// The same connection settings without kube-rs's built-in retry of 429/503/504: through
    /// the pod proxy a 503 means nothing listens on the pod's port, which retrying (up to 15
    /// times, backing off to minutes) does not change.
    once: Client,
    retry: Retry,
    server: String,
    kinds: Arc<Mutex<HashMap<(String, String), Resolved>>>,
}

impl fmt::Debug for Kube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kube")
            .field("server", &self.server)
            .finish()
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

fn tune(mut config: Config) -> Config {
    // A hung request must not hang a cluster's convergence: it fails and is retried.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
    config
}

impl Kube {
    /// Connect with a kubeconfig file, or (when `path` is `None`) as kubectl would: `$KUBECONFIG`,
    /// then `~/.kube/config`, then the in-cluster service account.
    pub async fn from_path(path: Option<&Path>) -> Result<Self, KubeError> {
        let (config, desc) = match path {
            Some(p) => {
                let desc = format!("`{}`", p.display());
                let kc = Kubeconfig::read_from(p).map_err(|e| KubeError::Kubeconfig {
                    source_desc: desc.clone(),
                    message: e.to_string(),
                })?;
                let c = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| KubeError::Kubeconfig {
                        source_desc: desc.clone(),
                        message: e.to_string(),
                    })?;
                (c, desc)
            }
            None => {
                let desc = "from `$KUBECONFIG` or `~/.kube/config`".to_string();
                let c = Config::infer().await.map_err(|e| KubeError::Kubeconfig {
                    source_desc: desc.clone(),
                    message: e.to_string(),
                })?;
                (c, desc)
            }
        };
        Self::from_config(config, &desc)
    }

    /// Connect with a kubeconfig held in memory (e.g. a workload cluster's kubeconfig Secret);
    /// `what` names it in errors.
    pub async fn from_yaml(text: &str, what: &str) -> Result<Self, KubeError> {
        let desc = what.to_string();
        let kc = Kubeconfig::from_yaml(text).map_err(|e| KubeError::Kubeconfig {
            source_desc: desc.clone(),
            message: e.to_string(),
        })?;
        let c = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| KubeError::Kubeconfig {
                source_desc: desc.clone(),
                message: e.to_string(),
            })?;
        Self::from_config(c, &desc)
    }

    fn from_config(config: Config, desc: &str) -> Result<Self, KubeError> {
        let server = config.cluster_url.to_string();
        let mut single = tune(config.clone());
        single.default_retry = false;
        let make = |c: Config| {
            Client::try_from(c).map_err(|e| KubeError::Kubeconfig {
                source_desc: desc.to_string(),
                message: e.to_string(),
            })
        };
        let client = make(tune(config))?;
        let once = make(single)?;
        Ok(Self {
            client,
            once,
            retry: Retry::default(),
            server,
            kinds: Arc::default(),
        })
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, KubeError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(r.clone());
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = self
            .retry
            .run(|| kube::discovery::pinned_kind(&self.client, &gvk))
            .await;
        match found {
            Ok(r) => {
                self.kinds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, r.clone());
                Ok(r)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Err(KubeError::NotServed {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            }),
            Err(kube::Error::Discovery(_)) => Err(KubeError::NotServed {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            }),
            Err(e) => Err(map_err("discover", format!("`{api_version}` `{kind}`"), e)),
        }
    }

    /// The (apiVersion, kind) pairs among `kinds` that the API server does not serve.
    pub async fn missing_kinds<'a>(
        &self,
        kinds: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<(String, String)>, KubeError> {
        let mut missing = Vec::new();
        for (av, k) in kinds {
            match self.resolve(av, k).await {
                Ok(_) => {}
                Err(KubeError::NotServed { api_version, kind }) => {
                    missing.push((api_version, kind))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(missing)
    }

    async fn api(&self, r: &ObjectRef) -> Result<Api<DynamicObject>, KubeError> {
        let (ar, caps) = self.resolve(&r.api_version, &r.kind).await?;
        Ok(match (caps.scope, &r.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Server-side apply `obj` as [`FIELD_MANAGER`], never forcing: fields owned by another
    /// manager come back as [`KubeError::Conflict`]. Returns the object as the server stored it.
    pub async fn apply(&self, obj: &Value) -> Result<Value, KubeError> {
        self.apply_as(obj, FIELD_MANAGER).await
    }

    /// Server-side apply `obj` as field manager `manager`: a partial object (say, one label)
    /// applied under its own manager is merged with what other managers own, and a later apply
    /// of the full object by [`FIELD_MANAGER`] leaves it alone.
    pub async fn apply_as(&self, obj: &Value, manager: &str) -> Result<Value, KubeError> {
        let r = ObjectRef::of(obj)?;
        let api = self.api(&r).await?;
        let pp = PatchParams::apply(manager);
        let patch = Patch::Apply(obj);
        let out = self.retry.run(|| api.patch(&r.name, &pp, &patch)).await;
        match out {
            Ok(o) => to_value(o),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(KubeError::Conflict {
                object: r.to_string(),
                message: s.message.clone(),
            }),
            Err(e) => Err(map_err("apply", r.to_string(), e)),
        }
    }

    /// Create `obj` unless an object of that name exists; returns what the server holds and
    /// whether this call created it. Used for what must be generated exactly once (a CA):
    /// of two racing runs, one creates and the other reads the winner's object.
    pub async fn create_if_absent(&self, obj: &Value) -> Result<(Value, bool), KubeError> {
        let r = ObjectRef::of(obj)?;
        if let Some(v) = self.get(&r).await? {
            return Ok((v, false));
        }
        let api = self.api(&r).await?;
        let dynobj: DynamicObject =
            serde_json::from_value(obj.clone()).map_err(|e| KubeError::Malformed {
                message: e.to_string(),
            })?;
        let pp = PostParams::default();
        let out = self.retry.run(|| api.create(&pp, &dynobj)).await;
        match out {
            Ok(o) => Ok((to_value(o)?, true)),
            Err(kube::Error::Api(s)) if s.code == 409 => match self.get(&r).await? {
                Some(v) => Ok((v, false)),
                None => Err(KubeError::Api {
                    verb: "create",
                    object: r.to_string(),
                    code: 409,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                }),
            },
            Err(e) => Err(map_err("create", r.to_string(), e)),
        }
    }

    /// Read one object; `None` when it does not exist.
    pub async fn get(&self, r: &ObjectRef) -> Result<Option<Value>, KubeError> {
        let api = self.api(r).await?;
        match self.retry.run(|| api.get_opt(&r.name)).await {
            Ok(Some(o)) => Ok(Some(to_value(o)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(map_err("get", r.to_string(), e)),
        }
    }

    /// List the objects of a kind (in one namespace, or everywhere) matching a label selector
    /// (empty for all).
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, KubeError> {
        let (ar, caps) = self.resolve(api_version, kind).await?;
        let api: Api<DynamicObject> = match (caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        };
        let lp = if selector.is_empty() {
            ListParams::default()
        } else {
            ListParams::default().labels(selector)
        };
        let what = format!("`{api_version}` `{kind}`");
        let list = self
            .retry
            .run(|| api.list(&lp))
            .await
            .map_err(|e| map_err("list", what, e))?;
        list.items.into_iter().map(to_value).collect()
    }

    /// GET `path` from `port` of a Pod through the API server's pod proxy
    /// (`/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/<path>`), as text. One attempt, without
    /// kube-rs's retries either: callers read live data and poll on their own schedule.
    pub async fn pod_proxy_get(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> Result<String, KubeError> {
        let object = format!("Pod `{namespace}/{pod}` port {port} `/{path}`");
        let uri = format!(
            "/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{}",
            path.trim_start_matches('/')
        );
        let uri: http::Uri = uri.parse().map_err(|e| KubeError::Malformed {
            message: format!("{object}: {e}"),
        })?;
        // A connection that could not be made (an API server busy with hundreds of clusters'
        // handshakes) is tried twice more; an answer, even an error, is final: a proxy's 503
        // means the Pod does not answer, and waiting on it would only delay the report.
        let connecting = Retry {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_millis(500),
        };
        connecting
            .run_if(
                |e| !matches!(e, kube::Error::Api(_)),
                || async {
                    // The URI is valid, so building the request cannot fail on it.
                    let req = http::Request::get(uri.clone())
                        .body(Vec::new())
                        .map_err(|e| {
                            kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e))
                        })?;
                    self.once.request_text(req).await
                },
            )
            .await
            .map_err(|e| map_err("proxy to", object, e))
    }

    /// Delete one object (background propagation). `false` when it was already gone.
    pub async fn delete(&self, r: &ObjectRef) -> Result<bool, KubeError> {
        let api = self.api(r).await?;
        let dp = DeleteParams::background();
        match self.retry.run(|| api.delete(&r.name, &dp)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(map_err("delete", r.to_string(), e)),
        }
    }

    /// Poll one object until `done` says so (it is given `None` while the object does not
    /// exist) or `timeout` passes. Returns the object as last seen, and whether `done` held.
    /// Errors that retrying may fix are waited out like any other unready state.
    pub async fn wait(
        &self,
        r: &ObjectRef,
        timeout: Duration,
        poll: Duration,
        mut done: impl FnMut(Option<&Value>) -> bool,
    ) -> Result<(Option<Value>, bool), KubeError> {
        let start = tokio::time::Instant::now();
        let mut last = None;
        loop {
            match self.get(r).await {
                Ok(v) => {
                    if done(v.as_ref()) {
                        return Ok((v, true));
                    }
                    last = v;
                }
                Err(e) if e.is_transient() => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= timeout {
                return Ok((last, false));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One key of a Secret's data; `None` when the Secret or the key is absent.
    pub async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KubeError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("Secret `{namespace}/{name}`");
        let s = self
            .retry
            .run(|| api.get_opt(name))
            .await
            .map_err(|e| map_err("get", what, e))?;
        Ok(s.and_then(|s| s.data)
            .and_then(|mut d| d.remove(key))
            .map(|b| b.0))
    }
}

fn to_value(o: DynamicObject) -> Result<Value, KubeError> {
    serde_json::to_value(o).map_err(|e| KubeError::Malformed {
        message: e.to_string(),
    })
}

fn map_err(verb: &'static str, object: String, e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(s) => KubeError::Api {
            verb,
            object,
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        other => KubeError::Transport {
            verb,
            object,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_refs_name_objects() {
        let v = serde_json::json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
            "metadata": {"name": "a", "namespace": "f"}});
        let r = ObjectRef::of(&v).unwrap();
        assert_eq!(r.to_string(), "Cluster `f/a`");
        assert!(ObjectRef::of(&serde_json::json!({"kind": "X"})).is_err());
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("a.b/v2"), ("a.b", "v2"));
    }
}
