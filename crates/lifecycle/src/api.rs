//! The narrow client the engine talks through.
//!
//! Everything `up`, `down`, `status`, `kubeconfig` and `mesh status` do to a cluster is one of
//! these calls, on the management cluster or on a workload cluster opened from its kubeconfig
//! Secret. [`meshfleet_kube::Kube`] implements it for real API servers (and the simulator); the
//! engine's unit tests implement it in memory, so ordering, resumption and the failure of one
//! cluster are tested without a server.

use std::future::Future;
use std::time::Duration;

use meshfleet_kube::{Kube, KubeError, ObjectRef, Retry};
use serde_json::Value;

/// A Kubernetes API, as far as the lifecycle engine uses one.
///
/// Futures are `Send` so that the engine can converge clusters on separate tasks.
pub trait Api: Clone + Send + Sync + 'static {
    /// The server's URL, for messages.
    fn server(&self) -> &str;

    /// Server-side apply `obj` (meshfleet's field manager), returning the stored object.
    fn apply(&self, obj: &Value) -> impl Future<Output = Result<Value, KubeError>> + Send {
        self.apply_as(obj, meshfleet_kube::FIELD_MANAGER)
    }

    /// Server-side apply `obj` as field manager `manager` (for a part of an object another step
    /// owns, such as one label), returning the stored object.
    fn apply_as(
        &self,
        obj: &Value,
        manager: &str,
    ) -> impl Future<Output = Result<Value, KubeError>> + Send;

    /// Create `obj` unless an object of that name exists; returns the stored object and whether
    /// this call created it (a racing writer's object wins).
    fn create_if_absent(
        &self,
        obj: &Value,
    ) -> impl Future<Output = Result<(Value, bool), KubeError>> + Send;

    /// Read one object (`None` when absent).
    fn get(&self, r: &ObjectRef) -> impl Future<Output = Result<Option<Value>, KubeError>> + Send;

    /// List objects of a kind, optionally in one namespace and by label selector.
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> impl Future<Output = Result<Vec<Value>, KubeError>> + Send;

    /// Delete one object; `false` when it was already gone.
    fn delete(&self, r: &ObjectRef) -> impl Future<Output = Result<bool, KubeError>> + Send;

    /// GET through the API server's pod proxy (`pods/<pod>:<port>/proxy/<path>`).
    fn pod_proxy_get(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> impl Future<Output = Result<String, KubeError>> + Send;

    /// Which of `kinds` (`apiVersion`, `kind`) the server does not serve.
    fn missing_kinds(
        &self,
        kinds: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<(String, String)>, KubeError>> + Send;

    /// Open another cluster's API from a kubeconfig document (`what` names its source in
    /// errors), retrying each call as `retry` says.
    fn open(
        &self,
        kubeconfig: &str,
        what: &str,
        retry: Retry,
    ) -> impl Future<Output = Result<Self, KubeError>> + Send;

    /// One key of a Secret, decoded (`None` when the Secret or the key is absent).
    fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, KubeError>> + Send {
        async move {
            let r = ObjectRef::new("v1", "Secret", Some(namespace), name);
            let Some(s) = self.get(&r).await? else {
                return Ok(None);
            };
            let ptr = format!("/data/{}", key.replace('~', "~0").replace('/', "~1"));
            let Some(b64) = s.pointer(&ptr).and_then(Value::as_str) else {
                return Ok(None);
            };
            use base64::Engine as _;
            Ok(base64::engine::general_purpose::STANDARD.decode(b64).ok())
        }
    }

    /// Poll `r` every `every` until `done` holds (it is given `None` while the object does not
    /// exist) or `timeout` passes; returns the last object seen and whether `done` held.
    /// Errors that retrying may fix are waited out like any other unready state.
    fn wait(
        &self,
        r: &ObjectRef,
        timeout: Duration,
        every: Duration,
        mut done: impl FnMut(Option<&Value>) -> bool + Send,
    ) -> impl Future<Output = Result<(Option<Value>, bool), KubeError>> + Send {
        async move {
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
                tokio::time::sleep(every).await;
            }
        }
    }
}

impl Api for Kube {
    fn server(&self) -> &str {
        Kube::server(self)
    }

    async fn apply_as(&self, obj: &Value, manager: &str) -> Result<Value, KubeError> {
        Kube::apply_as(self, obj, manager).await
    }

    async fn create_if_absent(&self, obj: &Value) -> Result<(Value, bool), KubeError> {
        Kube::create_if_absent(self, obj).await
    }

    async fn get(&self, r: &ObjectRef) -> Result<Option<Value>, KubeError> {
        Kube::get(self, r).await
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, KubeError> {
        Kube::list(self, api_version, kind, namespace, selector).await
    }

    async fn delete(&self, r: &ObjectRef) -> Result<bool, KubeError> {
        Kube::delete(self, r).await
    }

    async fn pod_proxy_get(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
        path: &str,
    ) -> Result<String, KubeError> {
        Kube::pod_proxy_get(self, namespace, pod, port, path).await
    }

    async fn missing_kinds(
        &self,
        kinds: &[(String, String)],
    ) -> Result<Vec<(String, String)>, KubeError> {
        let pairs: Vec<(&str, &str)> = kinds
            .iter()
            .map(|(a, k)| (a.as_str(), k.as_str()))
            .collect();
        Kube::missing_kinds(self, pairs).await
    }

    async fn open(&self, kubeconfig: &str, what: &str, retry: Retry) -> Result<Self, KubeError> {
        Ok(Kube::from_yaml(kubeconfig, what).await?.with_retry(retry))
    }

    async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KubeError> {
        Kube::secret_value(self, namespace, name, key).await
    }
}
