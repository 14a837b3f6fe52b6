//! The object store: objects keyed by resource, namespace and name, one resourceVersion counter,
//! an event history for watches that resume from a resourceVersion, and optional persistence.
//!
//! Every write goes through [`Store::mutate`], so metadata bookkeeping (uid, resourceVersion,
//! generation, creationTimestamp, finishing a graceful delete) lives in exactly one place.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How many events a store remembers for watches that resume from an older resourceVersion.
const HISTORY: usize = 5_000;

/// Identifies one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// `group/plural` (`/secrets` for the core group).
    pub resource: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl Key {
    /// Build a key.
    pub fn new(resource: &str, namespace: &str, name: &str) -> Self {
        Self {
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as broadcast to watchers and controllers. The objects are shared with the store
/// and the history: a broadcast hands every subscriber its own copy of the event, and deep
/// copies of every object for every subscriber and in the history made the simulator's memory
/// and CPU grow with the fleet times its watches.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// Which object.
    pub key: Key,
    /// The object after the change (before removal for deletes, with the new resourceVersion).
    pub object: Arc<Value>,
    /// resourceVersion of the change.
    pub rv: u64,
    /// The object before the change (None for creations), so filtered watches can tell when an
    /// object left or entered their selection.
    pub old: Option<Arc<Value>>,
}

/// Errors of store operations; the HTTP layer maps them to Kubernetes `Status` objects.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// An object with that name exists already.
    #[error("already exists")]
    AlreadyExists,
    /// The caller's resourceVersion is stale.
    #[error(
        "the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict,
    /// A caller-defined rejection (validation, SSA conflict, …), passed through unchanged.
    #[error("{0}")]
    Rejected(String),
    /// The requested resourceVersion is older than the history kept.
    #[error("too old resource version: {0}")]
    Gone(u64),
    /// Persisting failed.
    #[error("state file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

#[derive(Default, Serialize, Deserialize)]
struct Inner {
    rv: u64,
    #[serde(with = "shared_objects")]
    objects: Objects,
    #[serde(skip)]
    history: VecDeque<Event>,
}

fn map_key(k: &Key) -> String {
    format!("{}\u{0}{}\u{0}{}", k.resource, k.namespace, k.name)
}

/// The map keys of every object of `resource` (in `namespace`) lie in this range, since map keys
/// start with the resource and the namespace, each followed by a NUL: a list reads its own
/// objects instead of scanning the whole store.
fn key_range(resource: &str, namespace: Option<&str>) -> (String, String) {
    match namespace {
        Some(ns) => (
            format!("{resource}\u{0}{ns}\u{0}"),
            format!("{resource}\u{0}{ns}\u{1}"),
        ),
        None => (format!("{resource}\u{0}"), format!("{resource}\u{1}")),
    }
}

/// The objects by map key, each shared with the events and the history that carry it.
type Objects = BTreeMap<String, (Key, Arc<Value>)>;

/// The state file holds plain objects; in memory they are shared with the history.
mod shared_objects {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Objects, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = ser.serialize_map(Some(m.len()))?;
        for (k, (key, v)) in m {
            out.serialize_entry(k, &(key, &**v))?;
        }
        out.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Objects, D::Error> {
        let m: BTreeMap<String, (Key, Value)> = BTreeMap::deserialize(de)?;
        Ok(m.into_iter()
            .map(|(k, (key, v))| (k, (key, Arc::new(v))))
            .collect())
    }
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Event>,
    path: Option<PathBuf>,
    dirty: AtomicBool,
}

/// The result of a mutation closure: what to write.
pub enum Change {
    /// Leave the object as it is (no event, no new resourceVersion).
    Keep,
    /// Write this object (create or replace).
    Put(Value),
    /// Remove the object now.
    Remove,
}

/// Current time in the Kubernetes timestamp format (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    let ts = jiff::Timestamp::now();
    let secs = ts.as_second();
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ts.to_string())
}

impl Store {
    /// A store kept in memory only, or loaded from and saved to `path`.
    pub fn open(path: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut inner = Inner::default();
        if let Some(p) = &path
            && p.exists()
        {
            let bytes = std::fs::read(p).map_err(|source| StoreError::Io {
                path: p.clone(),
                source,
            })?;
            inner = serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
                path: p.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        }
        let (tx, _) = broadcast::channel(4096);
        Ok(Self {
            inner: Mutex::new(inner),
            tx,
            path,
            dirty: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (writes are single assignments).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.lock().rv
    }

    /// Read one object.
    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock()
            .objects
            .get(&map_key(key))
            .map(|(_, v)| (**v).clone())
    }

    /// Read one object in place: for passes that need a little of a large object (a Secret with
    /// one entry per mesh peer), where [`Store::get`]'s copy would dominate.
    pub fn read<T>(&self, key: &Key, f: impl FnOnce(&Value) -> T) -> Option<T> {
        self.lock().objects.get(&map_key(key)).map(|(_, v)| f(v))
    }

    /// Every object of a resource (optionally in one namespace), shared: for passes over large
    /// objects (HelmChartProxies with every mesh peer) that copy little of each.
    pub fn list_shared(&self, resource: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let g = self.lock();
        let (from, to) = key_range(resource, namespace);
        g.objects
            .range(from..to)
            .map(|(_, (_, v))| v.clone())
            .collect()
    }

    /// Visit every object in place, under the store's lock: for passes that read a little of
    /// everything (garbage collection), where [`Store::list`]'s copies would dominate.
    pub fn visit(&self, mut f: impl FnMut(&Key, &Value)) {
        let g = self.lock();
        for (k, v) in g.objects.values() {
            f(k, v);
        }
    }

    /// The objects of a resource (optionally in one namespace) that `keep` accepts, with the
    /// store's resourceVersion. `keep` sees each object in place and only those it accepts are
    /// copied: a list with a label selector for one cluster of 511 copied all 511 objects and
    /// dropped 510, and the clients of every cluster list that way (the simulator's CPU at 511
    /// clusters went mostly to those copies).
    pub fn list_where(
        &self,
        resource: &str,
        namespace: Option<&str>,
        mut keep: impl FnMut(&Value) -> bool,
    ) -> (Vec<Value>, u64) {
        let g = self.lock();
        let (from, to) = key_range(resource, namespace);
        let items = g
            .objects
            .range(from..to)
            .filter(|(_, (k, v))| {
                k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns) && keep(v)
            })
            .map(|(_, (_, v))| (**v).clone())
            .collect();
        (items, g.rv)
    }

    /// Every object of a resource (optionally in one namespace), with the store's resourceVersion.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        self.list_where(resource, namespace, |_| true)
    }

    /// Subscribe to changes after `since` (None: only future changes). Returns the backlog and
    /// the live receiver, taken atomically so nothing falls between them.
    pub fn watch_from(
        &self,
        since: Option<u64>,
    ) -> Result<(Vec<Event>, broadcast::Receiver<Event>), StoreError> {
        let g = self.lock();
        let rx = self.tx.subscribe();
        let mut backlog = Vec::new();
        if let Some(since) = since
            && since < g.rv
        {
            let oldest = g.history.front().map(|e| e.rv).unwrap_or(g.rv + 1);
            if since + 1 < oldest {
                return Err(StoreError::Gone(since));
            }
            backlog = g.history.iter().filter(|e| e.rv > since).cloned().collect();
        }
        Ok((backlog, rx))
    }

    /// A receiver of future changes (controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Atomically read-modify-write one object; returns the object as written (for a removal,
    /// its final state). `f` sees the current object (if any) and decides.
    /// Bookkeeping applied to a `Put`: uid and creationTimestamp kept (or minted), a new
    /// resourceVersion, generation bumped when anything but metadata and status changed, and an
    /// object whose deletionTimestamp is set and whose finalizers are empty is removed instead.
    pub fn mutate<F>(&self, key: &Key, f: F) -> Result<Option<Value>, StoreError>
    where
        F: FnOnce(Option<&Value>) -> Result<Change, StoreError>,
    {
        self.write(key, f, true)
    }

    /// [`Store::mutate`] for callers that do not need the result: controllers call this for
    /// every object on every pass, and most calls change nothing, so nothing is copied then.
    pub fn apply<F>(&self, key: &Key, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(Option<&Value>) -> Result<Change, StoreError>,
    {
        self.write(key, f, false).map(drop)
    }

    fn write<F>(&self, key: &Key, f: F, answer: bool) -> Result<Option<Value>, StoreError>
    where
        F: FnOnce(Option<&Value>) -> Result<Change, StoreError>,
    {
        let mut g = self.lock();
        let mk = map_key(key);
        let existing = g.objects.get(&mk).map(|(_, v)| &**v);
        let unchanged = |cur: Option<&Value>| Ok(if answer { cur.cloned() } else { None });
        let (kind, object) = match f(existing)? {
            Change::Keep => return unchanged(existing),
            Change::Remove => match existing {
                None => return Err(StoreError::NotFound),
                Some(cur) => (EventType::Deleted, cur.clone()),
            },
            Change::Put(mut obj) => {
                prepare(&mut obj, existing, key);
                if existing == Some(&obj) {
                    return unchanged(existing);
                }
                let empty = |p: &str| {
                    obj.pointer(p)
                        .and_then(Value::as_array)
                        .is_none_or(|a| a.is_empty())
                };
                // Namespaces also wait for their spec.finalizers (the namespace controller's).
                let finished = obj.pointer("/metadata/deletionTimestamp").is_some()
                    && empty("/metadata/finalizers")
                    && (key.resource != "/namespaces" || empty("/spec/finalizers"));
                if finished {
                    (EventType::Deleted, obj)
                } else if existing.is_some() {
                    (EventType::Modified, obj)
                } else {
                    (EventType::Added, obj)
                }
            }
        };
        let current = g.objects.get(&mk).map(|(_, v)| v.clone());
        g.rv += 1;
        let rv = g.rv;
        let mut object = object;
        if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        let object = Arc::new(object);
        if kind == EventType::Deleted {
            g.objects.remove(&mk);
        } else {
            g.objects.insert(mk, (key.clone(), object.clone()));
        }
        let ev = Event {
            kind,
            key: key.clone(),
            object: object.clone(),
            rv,
            old: current,
        };
        g.history.push_back(ev.clone());
        if g.history.len() > HISTORY {
            g.history.pop_front();
        }
        // Nobody listening is fine.
        let _ = self.tx.send(ev);
        self.dirty.store(true, Ordering::Release);
        drop(g);
        // Deleted objects come back in their final state, as the API server answers.
        Ok(answer.then(|| Arc::unwrap_or_clone(object)))
    }

    /// Write the state file if anything changed since the last save (atomically, mode 0600:
    /// Secrets live in it).
    pub fn flush(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let bytes = {
            let g = self.lock();
            serde_json::to_vec(&*g).map_err(|e| StoreError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?
        };
        write_atomic(path, &bytes).map_err(|source| {
            self.dirty.store(true, Ordering::Release);
            StoreError::Io {
                path: path.clone(),
                source,
            }
        })
    }
}

/// Write a file atomically with mode 0600 (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn prepare(obj: &mut Value, current: Option<&Value>, key: &Key) {
    if !obj.is_object() {
        *obj = json!({});
    }
    let meta = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
    let Some(meta) = meta else { return };
    if !meta.is_object() {
        *meta = json!({});
    }
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    m.insert("name".into(), json!(key.name));
    if key.namespace.is_empty() {
        m.remove("namespace");
    } else {
        m.insert("namespace".into(), json!(key.namespace));
    }
    match current {
        Some(cur) => {
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match cur.pointer(&format!("/metadata/{f}")) {
                    // deletionTimestamp can be set by the caller (graceful delete) but never cleared.
                    Some(v) if f != "deletionTimestamp" || !m.contains_key(f) => {
                        m.insert(f.into(), v.clone());
                    }
                    Some(_) => {}
                    None if f == "uid" || f == "creationTimestamp" => {
                        m.remove(f);
                    }
                    None => {}
                }
            }
            let cur_gen = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            m.insert("generation".into(), json!(cur_gen));
        }
        None => {
            m.insert("uid".into(), json!(new_uid()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.insert("generation".into(), json!(1));
        }
    }
    // Generation: bump when the non-metadata, non-status content changed.
    if let Some(cur) = current {
        let a = spec_part(cur);
        let b = spec_part(obj);
        if a != b
            && let Some(g) = obj.pointer_mut("/metadata/generation")
        {
            let n = g.as_i64().unwrap_or(1);
            *g = json!(n + 1);
        }
    }
}

fn spec_part(v: &Value) -> Value {
    match v.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    let a = fastrand::u128(..);
    let b =
        (a & !(0xf000u128 << 64) & !(0xc000u128 << 48)) | (0x4000u128 << 64) | (0x8000u128 << 48);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_older_than_the_history_are_gone() {
        let st = Store::open(None).unwrap();
        let k = Key::new("/configmaps", "default", "x");
        for i in 0..(HISTORY + 10) {
            st.mutate(&k, |_| {
                Ok(Change::Put(json!({"data": {"i": i.to_string()}})))
            })
            .unwrap();
        }
        assert!(matches!(st.watch_from(Some(1)), Err(StoreError::Gone(1))));
        let (backlog, _) = st.watch_from(Some(st.rv() - 3)).unwrap();
        assert_eq!(backlog.len(), 3);
        assert!(backlog.iter().all(|e| e.old.is_some()));
    }

    #[test]
    fn lists_read_only_their_resource_and_namespace() {
        let st = Store::open(None).unwrap();
        for (r, ns, n) in [
            ("/pods", "a", "x"),
            ("/pods", "ab", "y"),
            ("/pods", "", "z"),
            ("/podsx", "a", "w"),
            ("/secrets", "a", "v"),
        ] {
            st.mutate(&Key::new(r, ns, n), |_| Ok(Change::Put(json!({}))))
                .unwrap();
        }
        let names = |v: Vec<Value>| -> Vec<String> {
            v.iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(st.list("/pods", Some("a")).0), ["x"]);
        assert_eq!(names(st.list("/pods", None).0), ["z", "x", "y"]);
        assert_eq!(st.list_shared("/pods", Some("ab")).len(), 1);
        assert_eq!(st.list_shared("/podsx", None).len(), 1);
        let k = Key::new("/secrets", "a", "v");
        assert_eq!(
            st.read(&k, |v| v["metadata"]["name"].clone()),
            Some(json!("v"))
        );
        assert_eq!(st.read(&Key::new("/secrets", "b", "v"), |_| ()), None);
    }

    #[test]
    fn events_share_the_stored_object() {
        let st = Store::open(None).unwrap();
        let mut rx = st.subscribe();
        let k = Key::new("/configmaps", "default", "s");
        st.mutate(&k, |_| Ok(Change::Put(json!({"data": {"a": "1"}}))))
            .unwrap();
        st.mutate(&k, |_| Ok(Change::Put(json!({"data": {"a": "2"}}))))
            .unwrap();
        let first = rx.try_recv().unwrap();
        let second = rx.try_recv().unwrap();
        // The second event's `old` is the very object the first event carried.
        assert!(Arc::ptr_eq(&first.object, second.old.as_ref().unwrap()));
        assert_eq!(second.object["data"]["a"], "2");
        let (backlog, _) = st.watch_from(Some(first.rv)).unwrap();
        assert!(Arc::ptr_eq(&backlog[0].object, &second.object));
    }

    #[test]
    fn graceful_delete_finishes_when_finalizers_clear() {
        let st = Store::open(None).unwrap();
        let k = Key::new("/configmaps", "default", "f");
        st.mutate(&k, |_| {
            Ok(Change::Put(json!({"metadata": {"finalizers": ["a"]}})))
        })
        .unwrap();
        st.mutate(&k, |c| {
            let mut n = c.unwrap().clone();
            n["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            Ok(Change::Put(n))
        })
        .unwrap();
        assert!(st.get(&k).is_some());
        st.mutate(&k, |c| {
            let mut n = c.unwrap().clone();
            n["metadata"]["finalizers"] = json!([]);
            Ok(Change::Put(n))
        })
        .unwrap();
        assert!(st.get(&k).is_none());
    }
}
