//! Pod Security admission, as every Kubernetes API server since v1.25 runs it: a namespace's
//! `pod-security.kubernetes.io/<enforce|warn|audit>` labels pick a level (`privileged`,
//! `baseline`, `restricted`); a Pod created there that violates the `enforce` level is refused
//! with 403 Forbidden, and one that violates the `warn` level is admitted with a warning.
//!
//! Read from kubernetes/pod-security-admission@v0.36.2 (the v1.36 line; the checks are the same
//! in v0.35): the label parsing and defaults in `api/helpers.go` (`PolicyToEvaluate`: an unset
//! level is `privileged`, an invalid enforce level counts as `restricted`, an invalid warn or
//! audit level as `privileged`, and an unset warn level follows a stricter enforce level); the
//! order and form of the message in `policy/registry.go` (baseline checks first, then
//! restricted, each group sorted by check ID; a restricted check replaces the baseline check it
//! overrides), `policy/checks.go` (`reason (detail), reason (detail)`) and
//! `admission/admission.go` (`violates PodSecurity "<level>:<version>": …`, or `would violate`
//! for a warning); and each check's own file under `policy/`.
//!
//! Implemented are the checks meshfleet's objects and users' workloads commonly meet:
//! `capabilities_baseline`, `hostNamespaces`, `hostPathVolumes`, `hostPorts`, `privileged`,
//! `seccompProfile_baseline` (the field form), and for `restricted` `allowPrivilegeEscalation`,
//! `capabilities_restricted`, `restrictedVolumes`, `runAsNonRoot`, `runAsUser`,
//! `seccompProfile_restricted`. Not implemented (such Pods are admitted as if those checks
//! passed): `appArmorProfile`, `hostProbesAndHostLifecycle`, `procMount`, `seLinuxOptions`,
//! `sysctls`, `windowsHostProcess`, the `*-version` labels' older policy versions (every
//! version is judged as `latest`), exemptions, and the checks of Pod templates in workload
//! objects (which the real admission only warns about). Only Pod creation is judged: a Pod's
//! spec is almost entirely immutable, so updates are not.

use serde_json::Value;

/// The label prefix of the three modes.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// A Pod Security level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restriction.
    Privileged,
    /// Known privilege escalations refused.
    Baseline,
    /// Hardening best practice.
    Restricted,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

/// A level with the policy version it is named with (`latest` or `v1.x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The version as labelled (every version is judged as `latest`).
    pub version: String,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.name(), self.version)
    }
}

/// A namespace's policy: the level of each mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Violations are refused.
    pub enforce: LevelVersion,
    /// Violations are admitted with a warning to the client.
    pub warn: LevelVersion,
    /// Violations are recorded in the audit log (the simulator keeps none).
    pub audit: LevelVersion,
}

fn version(labels: &Value, mode: &str) -> Option<String> {
    let v = labels
        .get(format!("{LABEL_PREFIX}{mode}-version"))
        .and_then(Value::as_str)?;
    let ok = v == "latest"
        || v.strip_prefix("v1.")
            .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    // An invalid version counts as `latest` (`ParseVersion`).
    Some(if ok { v.to_string() } else { "latest".into() })
}

/// The cluster-wide default of `mode` from the API server's `PodSecurityConfiguration`
/// (`defaults.<mode>` and `defaults.<mode>-version`; unset: `privileged:latest`).
fn default_of(config: Option<&Value>, mode: &str) -> LevelVersion {
    let d = config.and_then(|c| c.get("defaults"));
    let get = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str);
    LevelVersion {
        level: get(mode)
            .and_then(Level::parse)
            .unwrap_or(Level::Privileged),
        version: get(&format!("{mode}-version"))
            .unwrap_or("latest")
            .to_string(),
    }
}

/// The policy a namespace's labels ask for, over the API server's defaults `config` (a
/// `PodSecurityConfiguration`) (`PolicyToEvaluate`, `api/helpers.go`@v0.36.2).
pub fn policy(config: Option<&Value>, namespace: Option<&Value>) -> Policy {
    let labels = namespace
        .and_then(|n| n.pointer("/metadata/labels"))
        .cloned()
        .unwrap_or(Value::Null);
    let level = |mode: &str, invalid: Level| -> Option<Level> {
        let v = labels
            .get(format!("{LABEL_PREFIX}{mode}"))
            .and_then(Value::as_str)?;
        Some(Level::parse(v).unwrap_or(invalid))
    };
    let (d_enforce, d_warn, d_audit) = (
        default_of(config, "enforce"),
        default_of(config, "warn"),
        default_of(config, "audit"),
    );
    let enforce_set = labels
        .get(format!("{LABEL_PREFIX}enforce"))
        .and_then(Value::as_str)
        .and_then(Level::parse);
    let enforce = LevelVersion {
        level: level("enforce", Level::Restricted).unwrap_or(d_enforce.level),
        version: version(&labels, "enforce").unwrap_or(d_enforce.version),
    };
    let audit = LevelVersion {
        level: level("audit", Level::Privileged).unwrap_or(d_audit.level),
        version: version(&labels, "audit").unwrap_or(d_audit.version),
    };
    let warn_level = level("warn", Level::Privileged);
    let mut warn = LevelVersion {
        level: warn_level.unwrap_or(d_warn.level),
        version: version(&labels, "warn").unwrap_or(d_warn.version),
    };
    if warn_level.is_none()
        && let Some(e) = enforce_set
        && e > warn.level
    {
        warn.level = e;
        if version(&labels, "warn").is_none() {
            warn.version = enforce.version.clone();
        }
    }
    Policy {
        enforce,
        warn,
        audit,
    }
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

fn quote(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("\"{}\"", items.join("\", \""))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Every container of the Pod in the order the checks visit them: init containers, containers,
/// ephemeral containers (`policy/visitor.go`).
fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn cname(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn sc<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(&format!("/securityContext/{path}"))
}

/// `reason`, `detail` of one failed check.
type Failure = (&'static str, String);

/// Containers `f` picks, as `container "a"` / `containers "a", "b"` (or `None`).
fn which(spec: &Value, f: impl Fn(&Value) -> bool) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| f(c))
        .map(cname)
        .collect()
}

fn named(items: &[String]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", items.len()),
        quote(items)
    )
}

fn windows(spec: &Value) -> bool {
    spec.pointer("/os/name").and_then(Value::as_str) == Some("windows")
}

fn user_namespace(spec: &Value) -> bool {
    spec.get("hostUsers").and_then(Value::as_bool) == Some(false)
}

/// Capabilities baseline allows adding (`check_capabilities_baseline.go`).
const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_caps(c: &Value) -> Vec<String> {
    sc(c, "capabilities/add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn capabilities_baseline(spec: &Value) -> Option<Failure> {
    let mut bad = Vec::new();
    let mut caps = Vec::new();
    for c in containers(spec) {
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|a| !BASELINE_CAPS.contains(&a.as_str()))
            .collect();
        if !extra.is_empty() {
            bad.push(cname(c));
            caps.extend(extra);
        }
    }
    (!bad.is_empty()).then(|| {
        (
            "non-default capabilities",
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                named(&bad),
                quote(&sorted(caps))
            ),
        )
    })
}

fn host_namespaces(spec: &Value) -> Option<Failure> {
    let set: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(k, _)| spec.get(*k).and_then(Value::as_bool) == Some(true))
    .map(|(_, s)| s)
    .collect();
    (!set.is_empty()).then(|| ("host namespaces", set.join(", ")))
}

fn volumes(spec: &Value) -> Vec<&Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

fn host_path_volumes(spec: &Value) -> Option<Failure> {
    let bad: Vec<String> = volumes(spec)
        .into_iter()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(cname)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "hostPath volumes",
            format!("{} {}", plural("volume", "volumes", bad.len()), quote(&bad)),
        )
    })
}

fn host_ports(spec: &Value) -> Option<Failure> {
    let mut bad = Vec::new();
    let mut ports = Vec::new();
    for c in containers(spec) {
        let hp: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !hp.is_empty() {
            bad.push(cname(c));
            ports.extend(hp);
        }
    }
    let ports = sorted(ports);
    (!bad.is_empty()).then(|| {
        (
            "hostPort",
            format!(
                "{} {} {} {}",
                named(&bad),
                plural("uses", "use", bad.len()),
                plural("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ),
        )
    })
}

fn privileged(spec: &Value) -> Option<Failure> {
    let bad = which(spec, |c| {
        sc(c, "privileged").and_then(Value::as_bool) == Some(true)
    });
    (!bad.is_empty()).then(|| {
        (
            "privileged",
            format!(
                "{} must not set securityContext.privileged=true",
                named(&bad)
            ),
        )
    })
}

fn seccomp_type(v: &Value) -> Option<&str> {
    sc(v, "seccompProfile")
        .filter(|p| !p.is_null())
        .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
}

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

/// The seccomp checks: `restricted` also wants a profile set on the Pod or every container.
fn seccomp(spec: &Value, restricted: bool) -> Option<Failure> {
    let mut setters = Vec::new();
    let mut values = Vec::new();
    let pod = seccomp_type(spec);
    if let Some(t) = pod
        && !valid_seccomp(t)
    {
        setters.push("pod".to_string());
        values.push(t.to_string());
    }
    let pod_set = pod.is_some_and(valid_seccomp);
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match seccomp_type(c) {
            Some(t) if !valid_seccomp(t) => {
                explicit.push(cname(c));
                values.push(t.to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(cname(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(named(&explicit));
    }
    if !setters.is_empty() {
        return Some((
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                quote(&sorted(values))
            ),
        ));
    }
    (restricted && !implicit.is_empty()).then(|| {
        (
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                named(&implicit)
            ),
        )
    })
}

fn allow_privilege_escalation(spec: &Value) -> Option<Failure> {
    let bad = which(spec, |c| {
        sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false)
    });
    (!bad.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false",
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                named(&bad)
            ),
        )
    })
}

fn capabilities_restricted(spec: &Value) -> Option<Failure> {
    let (mut no_drop, mut adding, mut caps) = (Vec::new(), Vec::new(), Vec::new());
    for c in containers(spec) {
        let Some(capabilities) = sc(c, "capabilities").filter(|v| !v.is_null()) else {
            no_drop.push(cname(c));
            continue;
        };
        let drops_all = capabilities
            .get("drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            no_drop.push(cname(c));
        }
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|a| a != "NET_BIND_SERVICE")
            .collect();
        if !extra.is_empty() {
            adding.push(cname(c));
            caps.extend(extra);
        }
    }
    let mut details = Vec::new();
    if !no_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            named(&no_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            named(&adding),
            quote(&sorted(caps))
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities", details.join("; ")))
}

/// Volume types `restricted` allows (`check_restrictedVolumes.go`).
const ALLOWED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume types `restricted` names when refusing them; anything else is `unknown`.
const NAMED_VOLUMES: [&str; 21] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(spec: &Value) -> Option<Failure> {
    let (mut bad, mut types) = (Vec::new(), Vec::new());
    for v in volumes(spec) {
        let sources: Vec<&str> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, x)| *k != "name" && !x.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        if sources.iter().any(|s| ALLOWED_VOLUMES.contains(s)) {
            continue;
        }
        bad.push(cname(v));
        types.push(
            sources
                .iter()
                .find(|s| NAMED_VOLUMES.contains(s))
                .copied()
                .unwrap_or("unknown")
                .to_string(),
        );
    }
    let types = sorted(types);
    (!bad.is_empty()).then(|| {
        (
            "restricted volume types",
            format!(
                "{} {} {} {} {}",
                plural("volume", "volumes", bad.len()),
                quote(&bad),
                plural("uses", "use", bad.len()),
                plural(
                    "restricted volume type",
                    "restricted volume types",
                    types.len()
                ),
                quote(&types)
            ),
        )
    })
}

fn run_as_non_root(spec: &Value) -> Option<Failure> {
    if user_namespace(spec) {
        return None;
    }
    let mut setters = Vec::new();
    let pod = sc(spec, "runAsNonRoot").and_then(Value::as_bool);
    if pod == Some(false) {
        setters.push("pod".to_string());
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match sc(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(cname(c)),
            Some(true) => {}
            None if pod != Some(true) => implicit.push(cname(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(named(&explicit));
    }
    if !setters.is_empty() {
        return Some((
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                named(&implicit)
            ),
        )
    })
}

fn run_as_user(spec: &Value) -> Option<Failure> {
    if user_namespace(spec) {
        return None;
    }
    let mut setters = Vec::new();
    if sc(spec, "runAsUser").and_then(Value::as_i64) == Some(0) {
        setters.push("pod".to_string());
    }
    let bad = which(spec, |c| {
        sc(c, "runAsUser").and_then(Value::as_i64) == Some(0)
    });
    if !bad.is_empty() {
        setters.push(named(&bad));
    }
    (!setters.is_empty()).then(|| {
        (
            "runAsUser=0",
            format!("{} must not set runAsUser=0", setters.join(" and ")),
        )
    })
}

/// The failed checks of `level` for a Pod spec, in the order the real admission reports them.
pub fn evaluate(level: Level, spec: &Value) -> Vec<Failure> {
    let restricted = level == Level::Restricted;
    if level == Level::Privileged {
        return Vec::new();
    }
    let win = windows(spec);
    // Baseline checks sorted by ID, the ones `restricted` overrides left out there; then the
    // restricted checks sorted by ID (`policy/registry.go`).
    let mut checks: Vec<Option<Failure>> = Vec::new();
    if !restricted {
        checks.push(capabilities_baseline(spec));
    }
    checks.push(host_namespaces(spec));
    if !restricted {
        checks.push(host_path_volumes(spec));
    }
    checks.push(host_ports(spec));
    checks.push(privileged(spec));
    if !restricted {
        checks.push(seccomp(spec, false));
    } else {
        // The restricted checks of allowPrivilegeEscalation, capabilities and seccomp do not
        // apply to Windows Pods (their `_1_25` versions).
        checks.push((!win).then(|| allow_privilege_escalation(spec)).flatten());
        checks.push((!win).then(|| capabilities_restricted(spec)).flatten());
        checks.push(restricted_volumes(spec));
        checks.push(run_as_non_root(spec));
        checks.push(run_as_user(spec));
        checks.push((!win).then(|| seccomp(spec, true)).flatten());
    }
    checks.into_iter().flatten().collect()
}

fn detail(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|(r, d)| {
            if d.is_empty() {
                r.to_string()
            } else {
                format!("{r} ({d})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the admission says of a Pod being created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The refusal (the message of a 403 Forbidden), when the enforce level is violated.
    pub refused: Option<String>,
    /// Warnings for the client, when the warn level is violated and the Pod is admitted.
    pub warnings: Vec<String>,
}

fn listed(config: Option<&Value>, key: &str, value: &str) -> bool {
    !value.is_empty()
        && config
            .and_then(|c| c.pointer(&format!("/exemptions/{key}")))
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|x| x == value))
}

/// Judge the creation of Pod `pod` (named `name`) in `namespace` (the Namespace object) by an
/// API server configured with `config` (a `PodSecurityConfiguration`, or none). Pods in an
/// exempt namespace or of an exempt runtime class are admitted unjudged (`admission.go`).
pub fn admit(
    config: Option<&Value>,
    namespace: Option<&Value>,
    name: &str,
    pod: &Value,
) -> Verdict {
    let ns_name = namespace
        .and_then(|n| n.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let runtime_class = spec
        .get("runtimeClassName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if listed(config, "namespaces", ns_name) || listed(config, "runtimeClasses", runtime_class) {
        return Verdict::default();
    }
    let p = policy(config, namespace);
    let mut v = Verdict::default();
    let enforced = evaluate(p.enforce.level, &spec);
    if !enforced.is_empty() {
        v.refused = Some(format!(
            "pods \"{name}\" is forbidden: violates PodSecurity \"{}\": {}",
            p.enforce,
            detail(&enforced)
        ));
        return v;
    }
    let warned = evaluate(p.warn.level, &spec);
    if !warned.is_empty() {
        v.warnings.push(format!(
            "would violate PodSecurity \"{}\": {}",
            p.warn,
            detail(&warned)
        ));
    }
    v
}

/// Give workload API server `key` the admission configuration of its control-plane machine
/// config (or none).
pub(crate) fn configure(world: &crate::World, key: &str, config: Option<Value>) {
    let mut m = world.pod_security.lock().unwrap_or_else(|e| e.into_inner());
    match config {
        Some(c) => {
            if m.get(key) != Some(&c) {
                m.insert(key.to_string(), c);
            }
        }
        None => {
            m.remove(key);
        }
    }
}

/// The admission configuration of API server `api` (`management` or a workload key).
pub(crate) fn config(world: &crate::World, api: &str) -> Option<Value> {
    world
        .pod_security
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(api)
        .cloned()
}

#[cfg(test)]
#[path = "psa_tests.rs"]
mod tests;
