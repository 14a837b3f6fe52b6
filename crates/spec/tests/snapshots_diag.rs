//! Snapshots of diagnostics as a person sees them (no colour): the headline, the location, the
//! source line with a caret under the offending token, the field path, the value and the hint.

use meshfleet_spec::parse;

fn rendered(text: &str) -> String {
    let report = parse(text).expect_err("fixture must be invalid");
    report
        .errors
        .iter()
        .chain(&report.warnings)
        .map(|d| d.render("fleet.yaml", text, false))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn many_problems_in_one_run() {
    let text = r#"apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata:
  name: demo
spec:
  versions:
    kubernetes: 1.35.4
    talos: v1.13.9
    cilium: "1.19.5"
  mesh:
    maxConnectedClusters: 300
    routing: tunel
  management:
    egressCIDRs: [203.0.113.10]
  providers:
    gcp: { project: my-project }
  clusters:
    - name: gcp-euw1
      provider: gcp
      region: europe-west1
      zones: [europe-west1-b, europe-west4-c]
      controlPlane: { replicas: 2, machineType: n2-standard-2 }
      workerPool:
        - { name: general, replicas: 3, machineType: n2-standard-4 }
    - name: gcp-euw1
      provider: aws
      region: eu-west-1
      zones: [eu-west-1a]
      controlPlane: { machineType: m6i.large }
"#;
    insta::assert_snapshot!(rendered(text));
}

#[test]
fn syntax_error() {
    insta::assert_snapshot!(rendered(
        "apiVersion: meshfleet.io/v1alpha1\nkind: Fleet\nmetadata:\n  name: [demo\n"
    ));
}

#[test]
fn wrong_kind() {
    insta::assert_snapshot!(rendered(
        "apiVersion: cluster.x-k8s.io/v1beta2\nkind: Cluster\nmetadata: { name: x }\n"
    ));
}
