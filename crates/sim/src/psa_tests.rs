//! Pod Security admission against messages in the form the real admission writes them
//! (kubernetes/pod-security-admission@v0.36.2 `policy/check_*.go`, `admission/admission.go`).

use serde_json::json;

use super::*;

fn ns(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": labels}})
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

#[test]
fn a_privileged_pod_in_a_restricted_namespace_is_refused_with_every_violation() {
    let n = ns(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let p = pod(json!({"containers": [{"name": "app", "image": "x",
        "securityContext": {"privileged": true}}]}));
    let v = admit(None, Some(&n), "bad", &p);
    assert_eq!(
        v.refused.as_deref(),
        Some(concat!(
            "pods \"bad\" is forbidden: violates PodSecurity \"restricted:latest\": ",
            "privileged (container \"app\" must not set securityContext.privileged=true), ",
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), ",
            "unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), ",
            "runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), ",
            "seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ))
    );
}

#[test]
fn baseline_refuses_host_access_and_warns_for_restricted() {
    let n = ns(json!({"pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.35",
        "pod-security.kubernetes.io/warn": "restricted"}));
    let p = pod(json!({"hostNetwork": true, "hostPID": true,
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "tmp", "emptyDir": {}}],
        "containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 443}],
             "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]}}},
            {"name": "b", "image": "x", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]}));
    let v = admit(None, Some(&n), "p", &p);
    assert_eq!(
        v.refused.as_deref(),
        Some(concat!(
            "pods \"p\" is forbidden: violates PodSecurity \"baseline:v1.35\": ",
            "non-default capabilities (container \"a\" must not include \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add), ",
            "host namespaces (hostNetwork=true, hostPID=true), ",
            "hostPath volumes (volume \"root\"), ",
            "hostPort (container \"a\" uses hostPorts 443, 8080), ",
            "seccompProfile (container \"b\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
        ))
    );
    // Admitted at baseline, warned about for restricted.
    let ok = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
    let v = admit(None, Some(&n), "p", &ok);
    assert_eq!(v.refused, None);
    assert_eq!(v.warnings.len(), 1);
    assert!(
        v.warnings[0].starts_with(
            "would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
        ),
        "{v:?}"
    );
}

#[test]
fn restricted_volumes_user_and_windows() {
    let n = ns(json!({"pod-security.kubernetes.io/enforce": "restricted"}));
    let p = pod(
        json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}},
            {"name": "c", "configMap": {"name": "c"}}],
        "containers": [{"name": "a", "image": "x", "securityContext": {"allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "NET_RAW"]}}}]}),
    );
    let v = admit(None, Some(&n), "p", &p);
    assert_eq!(
        v.refused.as_deref(),
        Some(concat!(
            "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": ",
            "unrestricted capabilities (container \"a\" must not include \"NET_RAW\" in securityContext.capabilities.add), ",
            "restricted volume types (volumes \"h\", \"n\" use restricted volume types \"hostPath\", \"nfs\"), ",
            "runAsUser=0 (pod must not set runAsUser=0)"
        ))
    );
    // A Windows Pod is not asked for Linux-only settings.
    let w = pod(
        json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true},
        "containers": [{"name": "a", "image": "x"}]}),
    );
    assert_eq!(admit(None, Some(&n), "w", &w), Verdict::default());
}

#[test]
fn labels_and_their_defaults() {
    // No labels: privileged, nothing judged.
    let p = pod(
        json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x",
        "securityContext": {"privileged": true}}]}),
    );
    assert_eq!(admit(None, None, "p", &p), Verdict::default());
    assert_eq!(
        admit(None, Some(&ns(json!({}))), "p", &p),
        Verdict::default()
    );
    // An invalid enforce level fails closed (restricted), an invalid warn level open.
    let pol = policy(
        None,
        Some(&ns(json!({
        "pod-security.kubernetes.io/enforce": "strict",
        "pod-security.kubernetes.io/warn": "bogus"}))),
    );
    assert_eq!(pol.enforce.level, Level::Restricted);
    assert_eq!(pol.warn.level, Level::Privileged);
    // Warn follows a stricter enforce level when unset.
    let pol = policy(
        None,
        Some(&ns(
            json!({"pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.36"}),
        )),
    );
    assert_eq!(pol.warn.to_string(), "baseline:v1.36");
    assert_eq!(pol.audit.to_string(), "privileged:latest");
}

#[test]
fn the_mesh_test_echo_pod_passes_restricted() {
    // The echo Pod `meshfleet mesh test` creates (meshfleet-lifecycle `meshtest::objects`),
    // copied here because the simulator does not depend on the lifecycle crate.
    let echo = pod(json!({
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "echo", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
            "args": ["netexec", "--http-port=8080"],
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}}}]}));
    assert!(evaluate(Level::Restricted, &echo["spec"]).is_empty());
}

#[test]
fn the_api_servers_defaults_and_exemptions_apply_to_unlabelled_namespaces() {
    // What meshfleet renders into the control plane's `cluster.apiServer.admissionControl`
    // by default (meshfleet-render `talos.rs` `pod_security`, spec defaults).
    let config = json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
        "kind": "PodSecurityConfiguration",
        "defaults": {"enforce": "baseline", "enforce-version": "latest", "audit": "restricted",
            "audit-version": "latest", "warn": "restricted", "warn-version": "latest"},
        "exemptions": {"usernames": [], "runtimeClasses": [], "namespaces": ["kube-system"]}});
    let bad = pod(json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x"}]}));
    let default_ns = json!({"metadata": {"name": "default"}});
    let v = admit(Some(&config), Some(&default_ns), "p", &bad);
    assert_eq!(
        v.refused.as_deref(),
        Some(
            "pods \"p\" is forbidden: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        )
    );
    let system = json!({"metadata": {"name": "kube-system"}});
    assert_eq!(
        admit(Some(&config), Some(&system), "p", &bad),
        Verdict::default()
    );
    // A namespace label still wins over the default.
    let open = json!({"metadata": {"name": "open", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    let v = admit(Some(&config), Some(&open), "p", &bad);
    assert_eq!(v.refused, None);
    assert!(
        v.warnings[0]
            .starts_with("would violate PodSecurity \"restricted:latest\": host namespaces"),
        "{v:?}"
    );
}
