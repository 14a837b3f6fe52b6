//! Garbage collection: objects whose every owner is gone are deleted.

use super::*;

pub(super) fn garbage_collect(api: &Api) {
    // Runs on every slow tick over every object of every cluster: read in place, copy only the
    // owner references.
    let mut uids = HashSet::new();
    let mut owned: Vec<(Key, Vec<String>)> = Vec::new();
    api.store.visit(|k, o| {
        uids.insert(s(o, "/metadata/uid").to_string());
        if let Some(refs) = o
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            owned.push((
                k.clone(),
                refs.iter().map(|r| s(r, "/uid").to_string()).collect(),
            ));
        }
    });
    for (k, refs) in owned {
        if refs.iter().all(|r| !uids.contains(r)) {
            delete(api, &k);
        }
    }
}
