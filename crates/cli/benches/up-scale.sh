#!/usr/bin/env bash
# Benchmark of `meshfleet up` against the simulator (issue #17): N single-node clusters over
# three GCP regions and three AWS regions (a VPC per AWS cluster), joined by HA VPN (GCP <-> AWS)
# and Transit Gateways (AWS <-> AWS), fully meshed, each N beside one cluster at the same
# simulator speed. The simulator runs as its own process (`meshfleet sim serve`) so its peak
# memory and CPU are its own; the cloud setups run before `up`, as a user runs them.
#
#   crates/cli/benches/up-scale.sh [N...]      # default: 1 16 64; MESHFLEET=path/to/binary
#   MESHFLEET_SIM_SPEED=50 (default) sets the simulator speed for every run.
#   MESHFLEET_UP_CONCURRENCY (default: N, so every cluster converges at once, as one does
#   beside it) sets `up --concurrency`.
#   MESHFLEET_UP_KEEP=1 keeps every run's directory (logs, `mesh status` output).
#
# The links are made by `meshfleet net setup` against the simulator's clouds, run again every
# two seconds beside `up` until it succeeds (it waits for the VPCs CAPA makes), as `up --sim`
# does for itself; its time is part of `up`'s.
# Prints one line per N: up wall time and its ratio to one cluster, up's peak RSS and CPU, the
# simulator's peak RSS and CPU, the API requests the simulator served per cluster (from the
# counts it prints when it stops, `up` and `mesh status` together), and what `mesh status`
# said afterwards (`meshed` when every expected peer of every cluster is connected).
set -euo pipefail
bin="$(realpath "${MESHFLEET:-${CARGO_TARGET_DIR:-target}/debug/meshfleet}")"
speed="${MESHFLEET_SIM_SPEED:-50}"
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1 16 64)
command -v /usr/bin/time >/dev/null || { echo "error: /usr/bin/time (Debian package time) is needed" >&2; exit 1; }

fleet() {
  local n="$1"
  cat <<HEAD
apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata: { name: scale }
spec:
  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }
  network:
    pods:     { pool: 10.0.0.0/9,    prefixLength: 19 }
    services: { pool: 10.128.0.0/12, prefixLength: 22 }
    nodes:    { pool: 10.160.0.0/12, prefixLength: 24 }
  mesh: { enabled: true, maxConnectedClusters: 511 }
  management: { egressCIDRs: [203.0.113.10/32] }
  interconnect: { gcpToAws: haVpn, awsCrossRegion: transitGateway }
  providers:
    gcp: { project: scale-project, network: meshfleet, imageBucket: scale-talos-images }
    aws: { sshKeyName: ops }
  clusters:
HEAD
  local g=(europe-west1:b us-east1:c asia-east1:a) a=(eu-west-1 us-east-1 ap-southeast-1) i rz r z
  for ((i = 0; i < n; i++)); do
    if ((i % 2 == 0)); then
      rz="${g[(i / 2) % 3]}" r="${rz%%:*}" z="${rz#*:}"
      echo "    - { name: c$i, provider: gcp, region: $r, zones: [$r-$z], controlPlane: { replicas: 1, machineType: n2-standard-2 }, workerPools: [] }"
    else
      r="${a[(i / 2) % 3]}"
      echo "    - { name: c$i, provider: aws, region: $r, zones: [${r}a], controlPlane: { replicas: 1, machineType: m6i.large }, workerPools: [] }"
    fi
  done
}

field() { grep "$1" "$2" | awk '{print $NF}'; }
cpu() { echo "$(field 'User time' "$1") + $(field 'System time' "$1")" | bc; }
secs() { # m:ss.cc or h:mm:ss
  awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }' <<<"$(field 'Elapsed' "$1")"
}

one=""
printf '%5s %9s %7s %11s %9s %12s %10s %12s %8s  %s\n' n "up s" ratio "up peak MB" "up cpu s" "sim peak MB" "sim cpu s" "requests/cl" "mesh" "requests by kind"
for n in "${sizes[@]}"; do
  d="$(mktemp -d)"
  fleet "$n" >"$d/fleet.yaml"
  cd "$d"
  /usr/bin/time -v -o sim.time "$bin" sim serve --listen 127.0.0.1:0 --kubeconfig mgmt.kubeconfig \
    --speed "$speed" --egress-ip 203.0.113.10 2>sim.log &
  timer=$!
  trap 'kill -TERM $(pgrep -P "$timer") 2>/dev/null || true' EXIT
  for _ in $(seq 300); do [ -s "$d/mgmt.kubeconfig.endpoints.json" ] && [ -s "$d/mgmt.kubeconfig" ] && break; sleep 0.1; done
  sleep 0.2
  gcp="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gcp"])' "$d/mgmt.kubeconfig.endpoints.json")"
  aws="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["aws"])' "$d/mgmt.kubeconfig.endpoints.json")"
  echo "test stand-in for the Talos GCP disk" >"$d/talos.raw.tar.gz"
  (NO_COLOR=1 "$bin" gcp setup -f fleet.yaml --endpoint "$gcp" --image-source talos.raw.tar.gz >/dev/null 2>gcp.log)
  "$bin" render -f fleet.yaml --out r >/dev/null 2>&1
  [ ! -f "$d/r/prerequisites/aws.yaml" ] || python3 - "$d/r/prerequisites/aws.yaml" "$aws" <<'PY'
import json, sys, urllib.request
import yaml  # PyYAML
p = yaml.safe_load(open(sys.argv[1]))
regions = p.get("regions", [])
body = {"images": [{"region": r["region"], "name": r["ami"]["name"], "owner": r["ami"]["owner"]} for r in regions],
        "keyPairs": [{"region": r["region"], "name": p["sshKeyName"]} for r in regions] if p.get("sshKeyName") else []}
req = urllib.request.Request(sys.argv[2] + "/_sim/aws/seed", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
PY
  [ ! -f "$d/r/prerequisites/aws.yaml" ] || NO_COLOR=1 "$bin" aws setup -f fleet.yaml --endpoint "$aws" >/dev/null 2>aws.log
  rc=0
  NO_COLOR=1 /usr/bin/time -v -o up.time "$bin" up -f fleet.yaml --kubeconfig mgmt.kubeconfig \
    --timeout 1800s --concurrency "${MESHFLEET_UP_CONCURRENCY:-$n}" >up.out 2>up.log &
  up=$!
  if grep -q 'awsCrossRegion\|gcpToAws: haVpn' fleet.yaml && [ "$n" -gt 1 ]; then
    (
      export AWS_ACCESS_KEY_ID=meshfleet-sim AWS_SECRET_ACCESS_KEY=meshfleet-sim AWS_REGION=eu-west-1
      until NO_COLOR=1 "$bin" net setup -f fleet.yaml --gcp-endpoint "$gcp" --aws-endpoint "$aws" \
        >net.out 2>net.log; do
        kill -0 "$up" 2>/dev/null || exit 0
        sleep 2
      done
    ) &
    net=$!
  else
    net=""
  fi
  wait "$up" || rc=$?
  [ -z "$net" ] || { kill "$net" 2>/dev/null || true; wait "$net" 2>/dev/null || true; }
  mesh=failed
  if [ "$rc" -eq 0 ]; then
    # The verdict is on stderr; one cluster has no peer to connect (a warning, exit 1).
    NO_COLOR=1 "$bin" mesh status -f fleet.yaml --kubeconfig mgmt.kubeconfig >mesh.out 2>mesh.log || true
    if [ "$n" -eq 1 ]; then mesh=-
    elif grep -q 'every expected peer connected, no problem found' mesh.out mesh.log; then mesh=meshed; fi
  fi
  kill -TERM "$(pgrep -P "$timer")" 2>/dev/null || true
  wait "$timer" || true
  trap - EXIT
  cd - >/dev/null
  t="$(secs "$d/up.time")"
  [ -n "$one" ] || one="$t"
  counts="$(grep -o 'served [0-9]* Kubernetes API requests: .*' "$d/sim.log" | sed 's/served [0-9]* Kubernetes API requests: //')"
  total="$(grep -o 'served [0-9]*' "$d/sim.log" | awk '{print $2}')"
  printf '%5s %9.1f %7.2f %11.0f %9.1f %12.0f %10.1f %12.0f %8s  %s\n' "$n" "$t" "$(echo "$t / $one" | bc -l)" \
    "$(echo "$(field 'Maximum resident' "$d/up.time") / 1024" | bc -l)" "$(cpu "$d/up.time")" \
    "$(echo "$(field 'Maximum resident' "$d/sim.time") / 1024" | bc -l)" "$(cpu "$d/sim.time")" \
    "$(echo "${total:-0} / $n" | bc -l)" "$mesh" "$counts"
  if [ "$rc" -ne 0 ]; then echo "  up failed (exit $rc); kept $d: tail of up.log:" >&2; tail -5 "$d/up.log" >&2
  elif [ "$mesh" = failed ] || [ -n "${MESHFLEET_UP_KEEP:-}" ]; then echo "  kept $d" >&2
  else rm -rf "$d"; fi
done
