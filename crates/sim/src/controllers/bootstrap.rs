//! TalosConfig (CABPT v0.6.12): bootstrap data once the cluster infrastructure is ready and
//! every patch loads with the Talos machinery CABPT vendors ([`crate::talos`]).
//!
//! Conditions as siderolabs/cluster-api-bootstrap-provider-talos sets them
//! (`controllers/talosconfig_controller.go`, `api/v1alpha3/conditions.go`@v0.6.12):
//! `DataSecretAvailable` False with `WaitingForClusterInfrastructure` (Info) while the
//! infrastructure is not ready, False with `DataSecretGenerationFailed` (Error) and the error as
//! message when generation fails, and `Ready` summarising it. A Machine whose TalosConfig is not
//! ready never gets bootstrap data, so it is never provisioned.

use super::*;

fn v1beta1(t: &str, ok: bool, reason: &str, severity: &str, message: &str) -> Value {
    let mut c = cond1(t, ok, reason, message);
    if !ok {
        c["severity"] = json!(severity);
    }
    c
}

pub(super) fn talos_configs(world: &World) {
    let api = &world.management;
    let Some(t) = ty(api, BOOT, "TalosConfig").cloned() else {
        return;
    };
    for tc in api.store.list_shared(&t.key(), None) {
        if deleting(&tc) {
            continue;
        }
        let k = key_of(&t, &tc);
        let infra_ready = cluster_of(api, &tc).is_some_and(|c| {
            c.pointer("/status/initialization/infrastructureProvisioned")
                .and_then(Value::as_bool)
                == Some(true)
        });
        let mut status = tc.get("status").cloned().unwrap_or_else(|| json!({}));
        let (ready, reason, severity, msg) = if !infra_ready {
            (
                false,
                "WaitingForClusterInfrastructure",
                "Info",
                String::new(),
            )
        } else {
            match crate::talos::load(tc.get("spec").unwrap_or(&Value::Null)) {
                Ok(_) => (true, "", "", String::new()),
                Err(e) => (false, "DataSecretGenerationFailed", "Error", e),
            }
        };
        // Once generated, the data stays (CABPT does not regenerate a created secret).
        let ready = ready || status.get("ready").and_then(Value::as_bool) == Some(true);
        status["ready"] = json!(ready);
        status["conditions"] = json!([
            v1beta1("Ready", ready, reason, severity, &msg),
            v1beta1("DataSecretAvailable", ready, reason, severity, &msg),
        ]);
        set_status(api, &k, status);
    }
}

/// The TalosConfig a Machine bootstraps with, if it exists.
pub(crate) fn machine_talos_config(api: &Api, m: &Value) -> Option<Value> {
    m.pointer("/spec/bootstrap/configRef")
        .and_then(|r| resolve(api, r, ns_of(m)))
        .map(|(_, v)| v)
}
