//! Building and merging kubeconfig files. Pure: text in, text out.
//!
//! `meshfleet kubeconfig` gathers one context per workload cluster. Merging into a file the user
//! already has must keep every context, cluster and user that is not ours untouched, and replace
//! ours in place, so running it twice gives the same file.

pub use kube::config::Kubeconfig;

/// Why a kubeconfig could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The text is not a kubeconfig.
    #[error("{what} is not a kubeconfig: {message}")]
    Parse {
        /// What was parsed.
        what: String,
        /// The parser's message.
        message: String,
    },
    /// It has no context to take.
    #[error("{what} has no usable context")]
    NoContext {
        /// What was parsed.
        what: String,
    },
    /// Serialisation failed.
    #[error("cannot write kubeconfig: {0}")]
    Write(String),
}

/// Parse kubeconfig text; `what` names it in errors.
pub fn parse(text: &str, what: &str) -> Result<Kubeconfig, KubeconfigError> {
    Kubeconfig::from_yaml(text).map_err(|e| KubeconfigError::Parse {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Serialise to YAML.
pub fn to_yaml(kc: &Kubeconfig) -> Result<String, KubeconfigError> {
    let mut kc = kc.clone();
    kc.api_version.get_or_insert_with(|| "v1".to_string());
    kc.kind.get_or_insert_with(|| "Config".to_string());
    serde_saphyr::to_string(&kc).map_err(|e| KubeconfigError::Write(e.to_string()))
}

/// Keep only the current (or first) context of `kc` and its cluster and user, renamed so the
/// context and the cluster are `name` and the user `<name>-admin`.
pub fn single_context(
    kc: &Kubeconfig,
    name: &str,
    what: &str,
) -> Result<Kubeconfig, KubeconfigError> {
    let no = || KubeconfigError::NoContext {
        what: what.to_string(),
    };
    let ctx = match &kc.current_context {
        Some(c) => kc.contexts.iter().find(|n| &n.name == c),
        None => kc.contexts.first(),
    }
    .or_else(|| kc.contexts.first())
    .ok_or_else(no)?;
    let inner = ctx.context.clone().ok_or_else(no)?;
    let mut cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == inner.cluster)
        .cloned()
        .ok_or_else(no)?;
    let mut user = match &inner.user {
        Some(u) => kc.auth_infos.iter().find(|a| &a.name == u).cloned(),
        None => None,
    };
    let user_name = format!("{name}-admin");
    cluster.name = name.to_string();
    if let Some(u) = user.as_mut() {
        u.name = user_name.clone();
    }
    let mut ctx = ctx.clone();
    ctx.name = name.to_string();
    if let Some(c) = ctx.context.as_mut() {
        c.cluster = name.to_string();
        c.user = user.as_ref().map(|_| user_name.clone());
    }
    Ok(Kubeconfig {
        clusters: vec![cluster],
        auth_infos: user.into_iter().collect(),
        contexts: vec![ctx],
        current_context: Some(name.to_string()),
        api_version: Some("v1".to_string()),
        kind: Some("Config".to_string()),
        ..Kubeconfig::default()
    })
}

/// Merge `ours` into `existing`: entries of `ours` replace same-named entries of `existing` in
/// place and new ones are appended; everything else of `existing` (other contexts, clusters,
/// users, preferences, the current context) is kept. When `existing` has no current context,
/// `ours`' is used.
pub fn merge(existing: Kubeconfig, ours: Kubeconfig) -> Kubeconfig {
    fn upsert<T>(into: &mut Vec<T>, from: Vec<T>, name: impl Fn(&T) -> &str) {
        for item in from {
            match into.iter().position(|e| name(e) == name(&item)) {
                Some(i) => into[i] = item,
                None => into.push(item),
            }
        }
    }
    let mut out = existing;
    upsert(&mut out.clusters, ours.clusters, |c| &c.name);
    upsert(&mut out.auth_infos, ours.auth_infos, |a| &a.name);
    upsert(&mut out.contexts, ours.contexts, |c| &c.name);
    if out.current_context.as_deref().is_none_or(str::is_empty) {
        out.current_context = ours.current_context;
    }
    out.api_version.get_or_insert_with(|| "v1".to_string());
    out.kind.get_or_insert_with(|| "Config".to_string());
    out
}

/// Combine single-context kubeconfigs into one (later entries win on equal names).
pub fn combine(parts: Vec<Kubeconfig>) -> Kubeconfig {
    let mut out = Kubeconfig {
        api_version: Some("v1".to_string()),
        kind: Some("Config".to_string()),
        ..Kubeconfig::default()
    };
    let mut first = None;
    for p in parts {
        if first.is_none() {
            first = p.current_context.clone();
        }
        out = merge(
            out,
            Kubeconfig {
                current_context: None,
                ..p
            },
        );
    }
    out.current_context = first;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kc(ctx: &str, server: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c-{ctx}\n  cluster:\n    server: {server}\nusers:\n- name: u-{ctx}\n  user:\n    token: {token}\ncontexts:\n- name: {ctx}\n  context:\n    cluster: c-{ctx}\n    user: u-{ctx}\ncurrent-context: {ctx}\n"
        )
    }

    #[test]
    fn single_context_renames_everything() {
        let k = parse(&kc("ns-a", "https://a", "t"), "test").unwrap();
        let s = single_context(&k, "a", "test").unwrap();
        assert_eq!(s.contexts[0].name, "a");
        assert_eq!(s.clusters[0].name, "a");
        assert_eq!(s.auth_infos[0].name, "a-admin");
        let c = s.contexts[0].context.as_ref().unwrap();
        assert_eq!(
            (c.cluster.as_str(), c.user.as_deref()),
            ("a", Some("a-admin"))
        );
        assert_eq!(s.current_context.as_deref(), Some("a"));
    }

    #[test]
    fn merge_keeps_other_contexts_and_replaces_ours() {
        let theirs = parse(&kc("prod", "https://prod", "p"), "t").unwrap();
        let old =
            single_context(&parse(&kc("x", "https://old", "o"), "t").unwrap(), "a", "t").unwrap();
        let existing = merge(theirs, old);
        let new = combine(vec![
            single_context(&parse(&kc("x", "https://new", "n"), "t").unwrap(), "a", "t").unwrap(),
            single_context(&parse(&kc("y", "https://b", "b"), "t").unwrap(), "b", "t").unwrap(),
        ]);
        let merged = merge(existing, new.clone());
        let names: Vec<_> = merged.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["prod", "a", "b"]);
        assert_eq!(
            merged.current_context.as_deref(),
            Some("prod"),
            "the user's current context stays"
        );
        let a = merged.clusters.iter().find(|c| c.name == "a").unwrap();
        assert_eq!(
            a.cluster.as_ref().unwrap().server.as_deref(),
            Some("https://new")
        );
        let prod = merged.clusters.iter().find(|c| c.name == "c-prod").unwrap();
        assert_eq!(
            prod.cluster.as_ref().unwrap().server.as_deref(),
            Some("https://prod")
        );
        // Idempotent: merging the same thing again changes nothing.
        let again = merge(merged.clone(), new);
        assert_eq!(to_yaml(&again).unwrap(), to_yaml(&merged).unwrap());
        // And the YAML reads back.
        let back = parse(&to_yaml(&merged).unwrap(), "t").unwrap();
        assert_eq!(back.contexts.len(), 3);
    }

    #[test]
    fn merge_into_empty_takes_our_current_context() {
        let ours =
            single_context(&parse(&kc("x", "https://a", "a"), "t").unwrap(), "a", "t").unwrap();
        let m = merge(Kubeconfig::default(), ours);
        assert_eq!(m.current_context.as_deref(), Some("a"));
    }
}
