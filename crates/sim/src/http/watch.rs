//! Watch streams: history replay from a resourceVersion, then live events, bookmarks.

use super::*;

pub(super) fn watch_stream(
    api: &Arc<Api>,
    t: &ResourceType,
    version: &str,
    ns: &str,
    r: &Req,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Response<Body> {
    let (ls, fs) = match selectors(r) {
        Ok(s) => s,
        Err(e) => return *e,
    };
    let rv = r.q("resourceVersion");
    let initial = r.q("sendInitialEvents") == Some("true");
    let bookmarks = r.q("allowWatchBookmarks") == Some("true");
    let since = match rv {
        None | Some("0") => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return bad_request(&format!("invalid resourceVersion `{s}`")),
        },
    };
    let (backlog, mut rx) = match api.store.watch_from(if initial { None } else { since }) {
        Ok(x) => x,
        Err(e) => {
            // Kubernetes answers an expired resourceVersion with a 200 stream holding one ERROR event.
            let ev = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": e.to_string(), "reason": "Expired", "code": 410}});
            let mut line = serde_json::to_vec(&ev).unwrap_or_default();
            line.push(b'\n');
            let mut resp = Response::new(full(line));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            return resp;
        }
    };
    let timeout = r
        .q("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let (tx, out_rx) = mpsc::channel::<Bytes>(256);
    let api = api.clone();
    let t = t.clone();
    let version = version.to_string();
    let ns = ns.to_string();
    let key = t.key();
    let synthetic_initial = since.is_none() || initial;
    let as_table = r.wants_table();
    tokio::spawn(async move {
        let encode = |ty: &str, obj: Value| -> Bytes {
            // `kubectl get -w` asks for Tables: each event then carries a one-row Table.
            let obj = if as_table && ty != "BOOKMARK" && ty != "ERROR" {
                crate::table::table(&t, &version, &[obj], None)
            } else {
                obj
            };
            let mut v = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };

        let mut last_rv = api.store.rv();
        // Objects that enter or leave the selection (a label change) arrive as ADDED or
        // DELETED, judged on the object before and after the change, as the API server does.
        let translate = |ev: &crate::store::Event| -> Option<&'static str> {
            let scope = ev.key.resource == key && (ns.is_empty() || ev.key.namespace == ns);
            if !scope {
                return None;
            }
            let sel = |o: &Value| ls.matches(o) && fs.matches(o);
            let now = sel(&ev.object);
            let was = ev.old.as_deref().is_some_and(sel);
            match (ev.kind, was, now) {
                (EventType::Deleted, w, n) => (w || n).then_some("DELETED"),
                (_, false, true) => Some("ADDED"),
                (_, true, true) => Some("MODIFIED"),
                (_, true, false) => Some("DELETED"),
                (_, false, false) => None,
            }
        };
        if synthetic_initial {
            let (items, rv) = api
                .store
                .list(&key, (!ns.is_empty()).then_some(ns.as_str()));
            // Events already in the backlog/receiver with rv <= list rv were covered by the list.
            last_rv = rv;
            for o in items.into_iter().filter(|o| ls.matches(o) && fs.matches(o)) {
                if tx
                    .send(encode("ADDED", present(o, &t, &version)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if initial {
                let bm = json!({"kind": t.kind, "apiVersion": t.api_version(&version),
                    "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                if tx.send(encode("BOOKMARK", bm)).await.is_err() {
                    return;
                }
            }
        } else {
            for ev in backlog {
                last_rv = ev.rv;
                if let Some(ty) = translate(&ev)
                    && tx
                        .send(encode(
                            ty,
                            present(Arc::unwrap_or_clone(ev.object), &t, &version),
                        ))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv { continue; }
                        last_rv = ev.rv;
                        if let Some(ty) = translate(&ev)
                            && tx.send(encode(ty, present(Arc::unwrap_or_clone(ev.object), &t, &version))).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let st = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "watch fell behind; relist", "reason": "Expired", "code": 410});
                        let _ = tx.send(encode("ERROR", st)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if bookmarks {
                        let bm = json!({"kind": t.kind, "apiVersion": t.api_version(&version),
                            "metadata": {"resourceVersion": last_rv.to_string()}});
                        if tx.send(encode("BOOKMARK", bm)).await.is_err() { return; }
                    } else if tx.is_closed() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = stop.changed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
    resp
}
