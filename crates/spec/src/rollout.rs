//! Fleet upgrades in waves: `spec.rollout` (how many clusters roll at once, in which order, how
//! long each may take to become healthy), the assignment of clusters to waves, and the
//! version-path rules an upgrade must respect.
//!
//! Everything here is pure: the engine reads what each cluster runs from the management
//! cluster and hands it to [`check_upgrade`], which answers with located diagnostics (field
//! paths into the fleet file) before anything is touched.
//!
//! The rules, and where they come from:
//! - Kubernetes: one minor at a time. kube-apiserver instances may be at most one minor apart
//!   during an upgrade and kubelets never newer than the API server (kubernetes.io
//!   "Version Skew Policy", `/releases/version-skew-policy/`); a rolling replacement runs old and
//!   new control-plane machines side by side, so the target may be at most one minor above every
//!   machine that runs. The pair must stay inside the Talos line's support matrix (Talos 1.13:
//!   Kubernetes 1.31–1.36, 1.12: 1.30–1.35; docs.siderolabs.com
//!   `talos/v1.13/getting-started/support-matrix`, the same six minors as
//!   `SupportedKubernetesVersions` in `siderolabs/talos:pkg/machinery/constants/constants.go`@v1.13.9).
//! - Talos: the configuration migration "is only tested between adjacent minor releases", and
//!   the recommended path goes through the newest patch of every intermediate minor
//!   (docs.siderolabs.com `talos/v1.13/configure-your-talos-cluster/lifecycle-management/upgrading-talos`,
//!   "Supported upgrade paths").
//! - Cilium: minor by minor (docs.cilium.io `operations/upgrade`: upgrade to the newest patch of
//!   the running minor, then one minor at a time; the previous minor is the supported rollback).
//!
//! One minor *down* is allowed for each, because that is how a halted rollout is rolled back
//! (put the old version back in the file); two minors down is refused like two up.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;
use crate::model::{Cluster, Fleet, Version, Versions};
use crate::releases::{KUBERNETES_RELEASES, SupportedVersions, TALOS_RELEASES};

/// How a version change reaches the fleet's clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// How many clusters replace machines or upgrade Cilium at the same time.
    #[serde(default = "one")]
    pub max_parallel: u32,
    /// Ordered label selectors over the clusters' `labels`; a cluster rolls in the first wave
    /// that matches it, `{}` matches every cluster left. Empty: one wave of every cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<LabelSelector>,
    /// How long to wait after a wave is healthy before the next starts, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_between_waves: Option<String>,
    /// How long one cluster may take to be healthy again (control plane and workers at the new
    /// version and available, Cilium agents ready, mesh links up), e.g. `30m`.
    #[serde(default = "default_health_timeout")]
    pub health_timeout: String,
}

fn one() -> u32 {
    1
}

fn default_health_timeout() -> String {
    "30m".to_owned()
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_parallel: 1,
            waves: Vec::new(),
            pause_between_waves: None,
            health_timeout: default_health_timeout(),
        }
    }
}

impl Rollout {
    /// The pause between waves (zero when unset or invalid; validation reports the latter).
    pub fn pause(&self) -> Duration {
        self.pause_between_waves
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(Duration::ZERO)
    }

    /// The per-cluster health timeout (30 minutes when invalid; validation reports that).
    pub fn timeout(&self) -> Duration {
        parse_duration(&self.health_timeout).unwrap_or(Duration::from_secs(30 * 60))
    }

    /// The index of the wave `labels` belongs to: the first selector that matches, or
    /// `waves.len()` (a last, implicit wave) when none does.
    pub fn wave_of(&self, labels: &BTreeMap<String, String>) -> usize {
        self.waves
            .iter()
            .position(|w| w.matches(labels))
            .unwrap_or(self.waves.len())
    }
}

/// A Kubernetes label selector (`metav1.LabelSelector`): every `matchLabels` pair and every
/// `matchExpressions` requirement must hold; the empty selector matches everything
/// (`LabelSelectorAsSelector`, kubernetes/apimachinery:`pkg/apis/meta/v1/helpers.go`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels a cluster must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the key relates to `values`.
    pub operator: SelectorOperator,
    /// Values for `In`/`NotIn` (non-empty); empty for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `metav1.LabelSelectorOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    /// The label is set to one of `values`.
    In,
    /// The label is absent or set to none of `values`.
    NotIn,
    /// The label is set (to anything).
    Exists,
    /// The label is not set.
    DoesNotExist,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let got = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => got.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => got.is_none_or(|v| !r.values.contains(v)),
                    SelectorOperator::Exists => got.is_some(),
                    SelectorOperator::DoesNotExist => got.is_none(),
                }
            })
    }

    /// True for `{}` (matches every cluster).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// One wave of a rollout: the clusters that roll together (at most `maxParallel` at a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wave {
    /// Index into `spec.rollout.waves`; `waves.len()` for the implicit last wave of clusters no
    /// selector matched.
    pub index: usize,
    /// Cluster names, in fleet-file order.
    pub clusters: Vec<String>,
}

/// Every cluster of the fleet in its wave, waves in rollout order, empty waves left out.
pub fn assign_waves(fleet: &Fleet) -> Vec<Wave> {
    assign(&fleet.spec.rollout, &fleet.spec.clusters)
}

fn assign(rollout: &Rollout, clusters: &[Cluster]) -> Vec<Wave> {
    let mut by: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for c in clusters {
        by.entry(rollout.wave_of(&c.labels))
            .or_default()
            .push(c.name.clone());
    }
    by.into_iter()
        .map(|(index, clusters)| Wave { index, clusters })
        .collect()
}

/// Parse a duration such as `90s`, `10m`, `1h30m` or `0s` (units `h`, `m`, `s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    (num.is_empty() && any).then(|| Duration::from_secs(total))
}

/// What a cluster runs now, as read from the management cluster: every version in use (a
/// halted rollout leaves old and new machines side by side). Empty lists mean "unknown" (a
/// new cluster): nothing to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// Kubernetes versions of the cluster's machines that are up.
    pub kubernetes: Vec<Version>,
    /// Talos versions in use.
    pub talos: Vec<Version>,
    /// Cilium chart versions in use.
    pub cilium: Vec<Version>,
}

/// Check that moving `cluster` from what it runs to `to` respects the upgrade rules (see the
/// module documentation). Each problem is an error at the `spec.versions` field to change,
/// naming the cluster, with the path to take as the hint.
pub fn check_upgrade(cluster: &str, running: &Running, to: &Versions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let (Some(tk), Some(tt), Some(tc)) = (
        Version::parse(&to.kubernetes),
        Version::parse(&to.talos),
        Version::parse(&to.cilium),
    ) else {
        // Malformed versions are the semantic pass's job.
        return out;
    };
    let talos_from = farthest(&running.talos, tt);
    let k8s_from = farthest(&running.kubernetes, tk);
    let path_hint =
        |from_t: Version, from_k: Version| match upgrade_path((from_t, from_k), (tt, tk)) {
            Some(steps) if steps.len() > 1 => format!(
                "go one step at a time, running `meshfleet up` after each: {}",
                steps
                    .iter()
                    .map(|(t, k)| format!("Talos `v{t}` with Kubernetes `v{k}`"))
                    .collect::<Vec<_>>()
                    .join(", then ")
            ),
            _ => "change one minor at a time and run `meshfleet up` after each".to_owned(),
        };
    if let Some(from) = talos_from
        && minor_gap(from, tt) > 1
    {
        let k = k8s_from.unwrap_or(tk);
        out.push(
            Diagnostic::error(
                "spec.versions.talos",
                format!(
                    "cluster `{cluster}` runs Talos `v{from}`; `v{tt}` {} (Talos migrates its configuration only between adjacent minors)",
                    skips(from, tt)
                ),
            )
            .with_value(&to.talos)
            .with_hint(path_hint(from, k)),
        );
    }
    if let Some(from) = k8s_from
        && minor_gap(from, tk) > 1
    {
        let t = talos_from.unwrap_or(tt);
        out.push(
            Diagnostic::error(
                "spec.versions.kubernetes",
                format!(
                    "cluster `{cluster}` runs Kubernetes `v{from}`; `v{tk}` {} (control-plane machines may be at most one minor apart while they are replaced)",
                    skips(from, tk)
                ),
            )
            .with_value(&to.kubernetes)
            .with_hint(path_hint(t, from)),
        );
    }
    if let Some(from) = farthest(&running.cilium, tc)
        && minor_gap(from, tc) > 1
    {
        let steps: Vec<String> = minor_steps(from, tc)
            .into_iter()
            .map(|m| {
                if m == tc.minor {
                    format!("`{tc}`")
                } else {
                    format!("the newest `{}.{m}` patch", tc.major)
                }
            })
            .collect();
        out.push(
            Diagnostic::error(
                "spec.versions.cilium",
                format!(
                    "cluster `{cluster}` runs Cilium `{from}`; `{tc}` {} (Cilium upgrades minor by minor)",
                    skips(from, tc)
                ),
            )
            .with_value(&to.cilium)
            .with_hint(format!(
                "go one minor at a time, running `meshfleet up` after each: {}",
                steps.join(", then ")
            )),
        );
    }
    out
}

/// The running version farthest from `to` (the one that constrains the jump).
fn farthest(running: &[Version], to: Version) -> Option<Version> {
    running.iter().copied().max_by_key(|v| minor_gap(*v, to))
}

/// How many minors apart two versions are (a major change counts as a huge gap).
fn minor_gap(a: Version, b: Version) -> u32 {
    if a.major != b.major {
        return u32::MAX;
    }
    a.minor.abs_diff(b.minor)
}

fn skips(from: Version, to: Version) -> String {
    if from.major != to.major {
        return "changes the major version".to_owned();
    }
    let between: Vec<String> = minor_steps(from, to)
        .into_iter()
        .filter(|m| *m != to.minor)
        .map(|m| format!("`{}.{m}`", to.major))
        .collect();
    let dir = if to.minor > from.minor {
        "skips"
    } else {
        "goes back past"
    };
    format!("{dir} {}", between.join(", "))
}

/// The minors from just after `from` to `to` (inclusive), in either direction.
fn minor_steps(from: Version, to: Version) -> Vec<u32> {
    if from.major != to.major {
        return vec![to.minor];
    }
    if to.minor >= from.minor {
        ((from.minor + 1)..=to.minor).collect()
    } else {
        (to.minor..from.minor).rev().collect()
    }
}

/// The newest known patch of a line, or `.0` for a line the table does not know.
fn newest(table: &[crate::releases::KnownRelease], major: u32, minor: u32) -> Version {
    table
        .iter()
        .find(|l| l.major == major && l.minor == minor)
        .map(|l| l.newest())
        .unwrap_or(Version {
            major,
            minor,
            patch: 0,
        })
}

/// A path of (Talos, Kubernetes) pairs from `from` to `to`, each step moving each by at most
/// one minor and every pair inside the Talos support matrix; intermediate steps use the newest
/// known patch of their lines, the last step is `to` itself. `None` when no such path exists
/// (different majors, or an end outside the matrix).
pub fn upgrade_path(
    from: (Version, Version),
    to: (Version, Version),
) -> Option<Vec<(Version, Version)>> {
    let (mut t, mut k) = from;
    let (tt, tk) = to;
    if t.major != tt.major || k.major != tk.major {
        return None;
    }
    let supported = |t: u32, k: u32| SupportedVersions::kubernetes_for_talos(t).contains(&k);
    if !supported(tt.minor, tk.minor) {
        return None;
    }
    let toward = |a: u32, b: u32| match a.cmp(&b) {
        std::cmp::Ordering::Less => a + 1,
        std::cmp::Ordering::Greater => a - 1,
        std::cmp::Ordering::Equal => a,
    };
    let mut steps = Vec::new();
    for _ in 0..64 {
        if t.minor == tt.minor && k.minor == tk.minor {
            break;
        }
        let (nt, nk) = (toward(t.minor, tt.minor), toward(k.minor, tk.minor));
        let (nt, nk) = [(nt, nk), (nt, k.minor), (t.minor, nk)]
            .into_iter()
            .find(|(a, b)| (*a, *b) != (t.minor, k.minor) && supported(*a, *b))?;
        t = if nt == tt.minor {
            tt
        } else {
            newest(TALOS_RELEASES, t.major, nt)
        };
        k = if nk == tk.minor {
            tk
        } else {
            newest(KUBERNETES_RELEASES, k.major, nk)
        };
        steps.push((t, k));
    }
    // Same lines but another patch: one step straight to the target.
    if steps.last() != Some(&(tt, tk)) {
        steps.push((tt, tk));
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("version")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let staging = labels(&[("env", "staging"), ("tier", "a")]);
        let prod = labels(&[("env", "prod")]);
        let none = labels(&[]);
        let empty = LabelSelector::default();
        assert!(empty.matches(&none) && empty.matches(&prod));
        let ml = LabelSelector {
            match_labels: labels(&[("env", "staging")]),
            ..Default::default()
        };
        assert!(ml.matches(&staging) && !ml.matches(&prod) && !ml.matches(&none));
        let sel = |r| LabelSelector {
            match_expressions: vec![r],
            ..Default::default()
        };
        let in_ = sel(req("env", SelectorOperator::In, &["staging", "dev"]));
        assert!(in_.matches(&staging) && !in_.matches(&prod) && !in_.matches(&none));
        let not_in = sel(req("env", SelectorOperator::NotIn, &["prod"]));
        assert!(not_in.matches(&staging) && !not_in.matches(&prod) && not_in.matches(&none));
        let exists = sel(req("tier", SelectorOperator::Exists, &[]));
        assert!(exists.matches(&staging) && !exists.matches(&prod));
        let absent = sel(req("tier", SelectorOperator::DoesNotExist, &[]));
        assert!(!absent.matches(&staging) && absent.matches(&prod));
        // matchLabels and matchExpressions are ANDed.
        let both = LabelSelector {
            match_labels: labels(&[("env", "staging")]),
            match_expressions: vec![req("tier", SelectorOperator::In, &["b"])],
        };
        assert!(!both.matches(&staging));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "10", "5d", "m", "1.5m", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_first_matching_wave_wins_and_unmatched_clusters_roll_last() {
        let r = Rollout {
            waves: vec![
                LabelSelector {
                    match_labels: labels(&[("env", "staging")]),
                    ..Default::default()
                },
                LabelSelector {
                    match_labels: labels(&[("region", "eu")]),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            r.wave_of(&labels(&[("env", "staging"), ("region", "eu")])),
            0
        );
        assert_eq!(r.wave_of(&labels(&[("env", "prod"), ("region", "eu")])), 1);
        assert_eq!(r.wave_of(&labels(&[("env", "prod")])), 2);
        assert_eq!(Rollout::default().wave_of(&labels(&[])), 0);
    }

    fn versions(k: &str, t: &str, c: &str) -> Versions {
        Versions {
            kubernetes: k.into(),
            talos: t.into(),
            cilium: c.into(),
        }
    }

    fn running(k: &[&str], t: &[&str], c: &[&str]) -> Running {
        Running {
            kubernetes: k.iter().map(|s| v(s)).collect(),
            talos: t.iter().map(|s| v(s)).collect(),
            cilium: c.iter().map(|s| v(s)).collect(),
        }
    }

    #[test]
    fn one_minor_at_a_time_passes_and_a_skipped_minor_is_refused_with_the_path() {
        let r = running(&["v1.35.4"], &["v1.13.9"], &["1.18.6"]);
        assert!(check_upgrade("a", &r, &versions("v1.36.3", "v1.13.9", "1.19.5")).is_empty());
        assert!(check_upgrade("a", &r, &versions("v1.35.4", "v1.13.9", "1.18.7")).is_empty());

        let r = running(&["v1.34.8"], &["v1.13.9"], &["1.19.5"]);
        let d = check_upgrade("a", &r, &versions("v1.36.3", "v1.13.9", "1.19.5"));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "spec.versions.kubernetes");
        assert!(
            d[0].message
                .contains("cluster `a` runs Kubernetes `v1.34.8`")
        );
        assert!(d[0].message.contains("skips `1.35`"), "{}", d[0].message);
        let hint = d[0].hint.as_deref().unwrap_or("");
        assert!(
            hint.contains("Talos `v1.13.9` with Kubernetes `v1.35.4`, then Talos `v1.13.9` with Kubernetes `v1.36.3`"),
            "{hint}"
        );

        let r = running(&["v1.35.4"], &["v1.13.9"], &["1.17.3"]);
        let d = check_upgrade("a", &r, &versions("v1.35.4", "v1.13.9", "1.19.5"));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "spec.versions.cilium");
        assert!(
            d[0].hint
                .as_deref()
                .unwrap_or("")
                .contains("the newest `1.18` patch, then `1.19.5`")
        );
    }

    #[test]
    fn the_oldest_running_machine_constrains_the_jump_and_one_minor_back_is_a_rollback() {
        // A halted rollout: some machines on 1.35, some still on 1.34.
        let r = running(&["v1.34.8", "v1.35.4"], &["v1.13.9"], &["1.19.5"]);
        assert_eq!(
            check_upgrade("a", &r, &versions("v1.36.3", "v1.13.9", "1.19.5")).len(),
            1
        );
        // Back to 1.34: allowed (the rollback of the halted cluster).
        assert!(check_upgrade("a", &r, &versions("v1.34.8", "v1.13.9", "1.19.5")).is_empty());
        // A new cluster: nothing to check.
        assert!(
            check_upgrade(
                "a",
                &Running::default(),
                &versions("v1.31.3", "v1.13.9", "1.19.5")
            )
            .is_empty()
        );
    }

    #[test]
    fn a_combined_jump_walks_talos_and_kubernetes_through_the_matrix() {
        let p = upgrade_path((v("v1.12.11"), v("v1.30.5")), (v("v1.13.9"), v("v1.36.3")));
        let p = p.expect("path");
        assert_eq!(p.last(), Some(&(v("v1.13.9"), v("v1.36.3"))));
        assert_eq!(p[0], (v("v1.13.9"), v("v1.31.3")));
        assert_eq!(p.len(), 6, "{p:?}");
        // Talos two minors at once is refused.
        let r = running(&["v1.31.3"], &["v1.11.6"], &["1.19.5"]);
        let d = check_upgrade("a", &r, &versions("v1.31.3", "v1.13.9", "1.19.5"));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "spec.versions.talos");
        assert!(
            d[0].hint
                .as_deref()
                .unwrap_or("")
                .contains("Talos `v1.12.11` with Kubernetes `v1.31.3`")
        );
    }

    proptest! {
        /// Every suggested path ends at the target, moves each line by at most one minor per
        /// step and stays inside the support matrix, so following the hint never hits the rule
        /// again.
        #[test]
        fn suggested_paths_are_valid(ft in 12u32..=15, fk_off in 0u32..6, tt in 12u32..=15, tk_off in 0u32..6) {
            let fk = SupportedVersions::kubernetes_for_talos(ft).start() + fk_off;
            let tk = SupportedVersions::kubernetes_for_talos(tt).start() + tk_off;
            let from = (Version { major: 1, minor: ft, patch: 1 }, Version { major: 1, minor: fk, patch: 1 });
            let to = (Version { major: 1, minor: tt, patch: 2 }, Version { major: 1, minor: tk, patch: 2 });
            let path = upgrade_path(from, to).expect("a path exists inside the matrix");
            prop_assert_eq!(path.last().copied(), Some(to));
            let mut prev = from;
            for step in &path {
                prop_assert!(minor_gap(prev.0, step.0) <= 1 && minor_gap(prev.1, step.1) <= 1, "{:?} -> {:?}", prev, step);
                prop_assert!(SupportedVersions::kubernetes_for_talos(step.0.minor).contains(&step.1.minor));
                let r = Running { kubernetes: vec![prev.1], talos: vec![prev.0], cilium: vec![] };
                let to_v = Versions { kubernetes: format!("v{}", step.1), talos: format!("v{}", step.0), cilium: "1.19.5".into() };
                prop_assert!(check_upgrade("c", &r, &to_v).is_empty(), "step {:?} -> {:?} refused", prev, step);
                prev = *step;
            }
        }

        /// Wave assignment puts every cluster in exactly one wave, the first selector that
        /// matches it, and keeps waves in selector order.
        #[test]
        fn every_cluster_lands_in_its_first_matching_wave(envs in proptest::collection::vec(0usize..4, 0..12)) {
            let names = ["staging", "canary", "prod", "other"];
            let r = Rollout {
                waves: vec![
                    LabelSelector { match_labels: labels(&[("env", "staging")]), ..Default::default() },
                    LabelSelector { match_expressions: vec![req("env", SelectorOperator::In, &["canary", "staging"])], ..Default::default() },
                    LabelSelector { match_labels: labels(&[("env", "prod")]), ..Default::default() },
                ],
                ..Default::default()
            };
            let clusters: Vec<Cluster> = envs.iter().enumerate().map(|(i, e)| Cluster {
                name: format!("c{i}"),
                provider: crate::model::Provider::Gcp,
                region: "r".into(),
                zones: vec![],
                control_plane: crate::model::ControlPlane { replicas: 1, machine_type: "m".into(), disk_gib: 10 },
                worker_pools: vec![],
                labels: labels(&[("env", names[*e])]),
                mesh_id: None,
                network: None,
            }).collect();
            let waves = assign(&r, &clusters);
            let total: usize = waves.iter().map(|w| w.clusters.len()).sum();
            prop_assert_eq!(total, clusters.len());
            prop_assert!(waves.windows(2).all(|w| w[0].index < w[1].index));
            for w in &waves {
                for n in &w.clusters {
                    let i: usize = n[1..].parse().unwrap();
                    prop_assert_eq!(w.index, envs[i].min(3));
                }
            }
        }
    }
}
