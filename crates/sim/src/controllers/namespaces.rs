//! Namespace termination: delete what a terminating namespace holds, then release it.

use super::*;

pub(super) fn namespaces(api: &Api) {
    for n in api
        .store
        .list("/namespaces", None)
        .0
        .iter()
        .filter(|n| deleting(n))
    {
        let name = name_of(n).to_string();
        let mut left = 0;
        for t in api.registry.types.iter().filter(|t| t.namespaced) {
            for o in api.store.list(&t.key(), Some(&name)).0 {
                left += 1;
                delete(api, &key_of(t, &o));
            }
        }
        if left == 0 {
            update(api, &Key::new("/namespaces", "", &name), |o| {
                o["spec"]["finalizers"] = json!([]);
            });
        }
    }
}
