#!/usr/bin/env bash
# Baseline for the planner benchmark: what a Taskfile-and-templates setup does for a fleet of N
# clusters (default 511): one `envsubst` run per cluster over a small cluster template, with the
# cluster's name, ID and CIDRs computed in the shell. It allocates nothing and checks nothing; it
# only shows the cost of the glue meshfleet replaces. `envsubst` is in Debian's gettext-base.
#
#   crates/plan/benches/envsubst-baseline.sh [N]     # prints the elapsed time to stderr
set -euo pipefail
n="${1:-511}"
command -v envsubst >/dev/null || { echo "error: envsubst not found; install Debian package gettext-base" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
template="$out/cluster.tmpl"
cat >"$template" <<'TMPL'
apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: ${CLUSTER_NAME}
  labels: { meshfleet.io/fleet: ${FLEET} }
spec:
  clusterNetwork:
    pods: { cidrBlocks: [${POD_CIDR}] }
    services: { cidrBlocks: [${SERVICE_CIDR}] }
---
# cilium values
cluster: { name: ${CLUSTER_NAME}, id: ${CLUSTER_ID} }
ipv4NativeRoutingCIDR: ${POD_CIDR}
---
# node subnet ${NODE_CIDR} in ${REGION}
TMPL

start=$(date +%s.%N)
for ((i = 0; i < n; i++)); do
  CLUSTER_NAME="c$(printf %03d "$i")" FLEET=big CLUSTER_ID=$((i + 1)) \
  POD_CIDR="10.$((i / 4)).$(((i % 4) * 64)).0/18" \
  SERVICE_CIDR="172.$((16 + i / 64)).$(((i % 64) * 4)).0/22" \
  NODE_CIDR="100.$((64 + i / 16)).$(((i % 16) * 16)).0/20" \
  REGION=europe-west1 \
    envsubst <"$template" >"$out/c$i.yaml"
done
end=$(date +%s.%N)
echo "envsubst baseline: $n clusters in $(echo "$end - $start" | bc -l 2>/dev/null || awk "BEGIN{print $end-$start}") s" >&2
