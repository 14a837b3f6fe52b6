#!/usr/bin/env python3
"""Render the real Cilium chart with a batch of values documents (meshfleet's Helm test).

stdin: JSON {"chart": "<path to .tgz>", "documents": [{"name": ..., "values": "<YAML text>"}]}
stdout: JSON list, one entry per document in order:
  {"name": ..., "ok": bool, "error": str, "clustermesh": [peer names in the
   cilium-clustermesh Secret], "config": {the clustermesh-* and policy-default-local-cluster
   keys of the cilium-config ConfigMap}, "templates": [paths of the templates that rendered
   a non-empty manifest]}

The chart is loaded once per process and documents are rendered by a small pool of worker
processes (the machine has two cores). A failing `required`/`fail` in a template raises
helm_python.HelmError, reported as ok=false with its message.
"""

import json
import multiprocessing
import sys

import helm_python as helm
import yaml

_chart = None


def _init(path):
    global _chart
    with open(path, "rb") as f:
        _chart = helm.Chart.load_archive(f.read())


def _render(doc):
    out = {"name": doc["name"], "ok": False, "error": "", "clustermesh": [], "config": {},
           "templates": []}
    try:
        values = yaml.safe_load(doc["values"]) or {}
        manifests = _chart.render(
            values=values, name="cilium", namespace="kube-system", is_install=True
        )
    except helm.HelmError as e:
        out["error"] = str(e)
        return out
    except Exception as e:  # a YAML error is as much a failure as a template error
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    out["ok"] = True
    text = manifests.get("cilium/templates/clustermesh-config/clustermesh-secret.yaml", "")
    for obj in yaml.safe_load_all(text):
        if obj and obj.get("kind") == "Secret":
            out["clustermesh"] = sorted((obj.get("data") or {}).keys())
    out["templates"] = sorted(k for k, v in manifests.items() if v and v.strip())
    text = manifests.get("cilium/templates/cilium-configmap.yaml", "")
    for obj in yaml.safe_load_all(text):
        if obj and obj.get("kind") == "ConfigMap":
            data = obj.get("data") or {}
            out["config"] = {
                k: v
                for k, v in data.items()
                if k.startswith("clustermesh-") or k == "policy-default-local-cluster"
            }
    return out


def main():
    request = json.load(sys.stdin)
    docs = request["documents"]
    workers = max(1, min(2, len(docs)))
    # spawn, not fork: the Helm library runs a Go runtime, whose threads do not survive a fork.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(request["chart"],)) as pool:
        results = pool.map(_render, docs, chunksize=max(1, len(docs) // (4 * workers)))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
