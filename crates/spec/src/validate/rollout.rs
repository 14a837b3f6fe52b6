//! Rules of `spec.rollout`: a positive `maxParallel`, durations that parse, label selectors as
//! Kubernetes validates them (`ValidateLabelSelectorRequirement`,
//! kubernetes/apimachinery:`pkg/apis/meta/v1/validation/validation.go`: `In`/`NotIn` need
//! values, `Exists`/`DoesNotExist` take none), and warnings for waves that can never hold a
//! cluster and clusters no wave names.

use crate::diag::{Diagnostic, Report};
use crate::model::Fleet;
use crate::rollout::{SelectorOperator, parse_duration};

/// Apply the rollout rules. Paths are set; positions are filled by the caller.
pub(crate) fn check(r: &mut Report, fleet: &Fleet) {
    let ro = &fleet.spec.rollout;
    if ro.max_parallel == 0 {
        r.push(
            Diagnostic::error(
                "spec.rollout.maxParallel",
                "`maxParallel` is `0`: no cluster could ever roll",
            )
            .with_value(0)
            .with_hint("use 1 (one cluster at a time, the default) or more"),
        );
    }
    if let Some(p) = &ro.pause_between_waves
        && parse_duration(p).is_none()
    {
        r.push(duration_error("spec.rollout.pauseBetweenWaves", p));
    }
    match parse_duration(&ro.health_timeout) {
        None => r.push(duration_error(
            "spec.rollout.healthTimeout",
            &ro.health_timeout,
        )),
        Some(d) if d.is_zero() => r.push(
            Diagnostic::error(
                "spec.rollout.healthTimeout",
                "a health timeout of zero fails every cluster at once",
            )
            .with_value(&ro.health_timeout)
            .with_hint("give each cluster time to replace its machines, e.g. `30m`"),
        ),
        Some(_) => {}
    }
    for (i, w) in ro.waves.iter().enumerate() {
        let base = format!("spec.rollout.waves[{i}]");
        super::semantic::check_labels(r, &format!("{base}.matchLabels"), &w.match_labels);
        for (j, e) in w.match_expressions.iter().enumerate() {
            let p = format!("{base}.matchExpressions[{j}]");
            if !label_key_ok(&e.key) {
                r.push(
                    Diagnostic::error(format!("{p}.key"), format!("`{}` is not a valid label key", e.key))
                        .with_value(&e.key)
                        .with_hint("an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` and `.`"),
                );
            }
            let with_values = matches!(e.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if with_values && e.values.is_empty() {
                r.push(
                    Diagnostic::error(
                        format!("{p}.values"),
                        format!("operator `{:?}` needs at least one value", e.operator),
                    )
                    .with_hint("list the label values to match, or use `Exists`"),
                );
            } else if !with_values && !e.values.is_empty() {
                r.push(
                    Diagnostic::error(
                        format!("{p}.values"),
                        format!("operator `{:?}` takes no values", e.operator),
                    )
                    .with_hint("remove `values`, or use `In`/`NotIn`"),
                );
            }
            for (k, v) in e.values.iter().enumerate() {
                if !(v.is_empty() || name_ok(v)) {
                    r.push(
                        Diagnostic::error(format!("{p}.values[{k}]"), format!("`{v}` is not a valid label value"))
                            .with_value(v)
                            .with_hint("up to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"),
                    );
                }
            }
        }
    }
    // Which wave each cluster lands in, to warn about waves nothing can reach.
    if ro.waves.is_empty() {
        return;
    }
    let mut used = vec![false; ro.waves.len() + 1];
    for c in &fleet.spec.clusters {
        used[ro.wave_of(&c.labels)] = true;
    }
    for (i, wave) in ro.waves.iter().enumerate() {
        // A `{}` that finds nothing left is the harmless catch-all of a fleet fully covered.
        if used[i] || (wave.is_empty() && !ro.waves[..i].iter().any(|w| w.is_empty())) {
            continue;
        }
        let after_empty = ro.waves[..i].iter().position(|w| w.is_empty());
        let (msg, hint) = match after_empty {
            Some(e) => (
                format!("wave {i} comes after `{{}}` (wave {e}), which takes every cluster left"),
                "move `{}` to the end of `waves`".to_owned(),
            ),
            None => (
                format!("wave {i} matches no cluster"),
                "check the selector against the clusters' `labels`".to_owned(),
            ),
        };
        r.push(Diagnostic::warning(format!("spec.rollout.waves[{i}]"), msg).with_hint(hint));
    }
    for (i, c) in fleet.spec.clusters.iter().enumerate() {
        if ro.wave_of(&c.labels) == ro.waves.len() {
            r.push(
                Diagnostic::warning(
                    format!("spec.clusters[{i}].labels"),
                    format!(
                        "cluster `{}` matches no rollout wave; it rolls after the last one",
                        c.name
                    ),
                )
                .with_hint("end `spec.rollout.waves` with `{}` to say so explicitly"),
            );
        }
    }
}

fn duration_error(path: &str, text: &str) -> Diagnostic {
    Diagnostic::error(path, format!("`{text}` is not a duration"))
        .with_value(text)
        .with_hint("write hours, minutes and seconds such as `90s`, `10m` or `1h30m`")
}

/// A label name or value: up to 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name.
fn label_key_ok(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    name_ok(name)
        && prefix.is_none_or(|p| {
            p.len() <= 253
                && p.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        })
}
