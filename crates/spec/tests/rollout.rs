//! `spec.rollout`: defaults, located errors for bad selectors and durations, and the warnings
//! for waves nothing reaches.

use meshfleet_spec::{Diagnostic, Severity, parse, rollout};
use std::time::Duration;

const EXAMPLE: &str = include_str!("../../../examples/fleet.yaml");

fn with_rollout(yaml: &str) -> String {
    let anchor = "spec:\n  versions:";
    assert!(EXAMPLE.contains(anchor), "fixture drift");
    EXAMPLE.replacen(
        anchor,
        &format!("spec:\n  rollout:\n{yaml}\n  versions:"),
        1,
    )
}

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(l) => l.warnings,
        Err(r) => r.errors.into_iter().chain(r.warnings).collect(),
    }
}

#[track_caller]
fn expect(text: &str, severity: Severity, path: &str, message: &str) -> Diagnostic {
    let all = problems(text);
    match all
        .iter()
        .find(|d| d.path == path && d.message == message && d.severity == severity)
    {
        Some(d) => {
            assert!(d.position.is_some(), "no position for {d:?}");
            d.clone()
        }
        None => panic!(
            "expected {severity:?} at `{path}`: {message}\n got:\n{}",
            all.iter()
                .map(|d| format!("  {:?} {} : {}", d.severity, d.path, d.message))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn defaults_roll_one_cluster_at_a_time_in_one_wave() {
    let f = parse(EXAMPLE).expect("example").fleet;
    assert_eq!(f.spec.rollout.max_parallel, 1);
    assert_eq!(f.spec.rollout.timeout(), Duration::from_secs(1800));
    assert_eq!(f.spec.rollout.pause(), Duration::ZERO);
    let waves = rollout::assign_waves(&f);
    assert_eq!(waves.len(), 1);
    assert_eq!(waves[0].clusters, ["gcp-euw1", "gcp-use1", "aws-euw1"]);
}

#[test]
fn waves_parse_and_assign_in_order() {
    let text = with_rollout(
        "    maxParallel: 2\n    pauseBetweenWaves: 90s\n    healthTimeout: 1h\n    waves:\n      - matchExpressions: [{ key: env, operator: In, values: [staging] }]\n      - matchLabels: { env: prod }\n      - {}",
    )
    .replacen("labels: { env: prod }", "labels: { env: staging }", 1);
    let l = parse(&text).expect("valid");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let r = &l.fleet.spec.rollout;
    assert_eq!(
        (r.max_parallel, r.pause(), r.timeout()),
        (2, Duration::from_secs(90), Duration::from_secs(3600))
    );
    let waves = rollout::assign_waves(&l.fleet);
    assert_eq!(
        waves
            .iter()
            .map(|w| (w.index, w.clusters.clone()))
            .collect::<Vec<_>>(),
        vec![
            (0, vec!["gcp-euw1".to_string()]),
            (1, vec!["gcp-use1".to_string(), "aws-euw1".to_string()]),
        ]
    );
}

#[test]
fn bad_rollout_settings_are_located_errors() {
    let text = with_rollout(
        "    maxParallel: 0\n    pauseBetweenWaves: 5 minutes\n    healthTimeout: 0s\n    waves:\n      - matchExpressions: [{ key: env, operator: In }, { key: tier, operator: Exists, values: [a] }, { key: 'bad key', operator: NotIn, values: ['-x'] }]",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.maxParallel",
        "`maxParallel` is `0`: no cluster could ever roll",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.pauseBetweenWaves",
        "`5 minutes` is not a duration",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.healthTimeout",
        "a health timeout of zero fails every cluster at once",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.waves[0].matchExpressions[0].values",
        "operator `In` needs at least one value",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.waves[0].matchExpressions[1].values",
        "operator `Exists` takes no values",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.waves[0].matchExpressions[2].key",
        "`bad key` is not a valid label key",
    );
    expect(
        &text,
        Severity::Error,
        "spec.rollout.waves[0].matchExpressions[2].values[0]",
        "`-x` is not a valid label value",
    );
    // An unknown operator is a structural error.
    let text = with_rollout(
        "    waves:\n      - matchExpressions: [{ key: env, operator: Equals, values: [a] }]",
    );
    assert!(parse(&text).is_err());
}

#[test]
fn unreachable_waves_and_unassigned_clusters_warn() {
    let text = with_rollout("    waves:\n      - {}\n      - matchLabels: { env: prod }");
    expect(
        &text,
        Severity::Warning,
        "spec.rollout.waves[1]",
        "wave 1 comes after `{}` (wave 0), which takes every cluster left",
    );
    let text = with_rollout(
        "    waves:\n      - matchLabels: { env: staging }\n      - matchLabels: { region: eu }",
    );
    expect(
        &text,
        Severity::Warning,
        "spec.rollout.waves[0]",
        "wave 0 matches no cluster",
    );
    expect(
        &text,
        Severity::Warning,
        "spec.clusters[0].labels",
        "cluster `gcp-euw1` matches no rollout wave; it rolls after the last one",
    );
}
