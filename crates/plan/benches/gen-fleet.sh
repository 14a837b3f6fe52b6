#!/usr/bin/env bash
# Print a valid fleet file of N clusters (default 511, maxConnectedClusters 511) on stdout, with
# pools that hold 1024 blocks of each kind. Used to measure `meshfleet plan` on a large fleet:
#   crates/plan/benches/gen-fleet.sh 511 > /tmp/big/fleet.yaml
set -euo pipefail
n="${1:-511}"
cat <<HEAD
apiVersion: meshfleet.io/v1alpha1
kind: Fleet
metadata:
  name: big
spec:
  versions: { kubernetes: v1.35.4, talos: v1.13.9, cilium: 1.19.5 }
  network:
    pods:     { pool: 10.0.0.0/8,     prefixLength: 18 }
    services: { pool: 172.16.0.0/12,  prefixLength: 22 }
    nodes:    { pool: 100.64.0.0/10,  prefixLength: 20 }
  mesh: { enabled: true, maxConnectedClusters: 511, encryption: wireguard }
  management: { egressCIDRs: [203.0.113.10/32] }
  interconnect: { awsCrossRegion: transitGateway, gcpToAws: haVpn }
  providers:
    gcp: { project: my-project }
    aws: {}
  clusters:
HEAD
regions=(gcp:europe-west1 gcp:us-east1 gcp:us-central1 gcp:asia-east1 aws:eu-west-1 aws:us-east-1 aws:us-west-2 aws:ap-southeast-1)
for ((i = 0; i < n; i++)); do
  pr="${regions[i % ${#regions[@]}]}"
  provider="${pr%%:*}" region="${pr#*:}"
  if [ "$provider" = gcp ]; then zone="$region-b" machine=n2-standard-2; else zone="${region}a" machine=m6i.large; fi
  printf '    - { name: c%03d-%s, provider: %s, region: %s, zones: [%s], controlPlane: { replicas: 3, machineType: %s }, workerPools: [{ name: general, replicas: 3, machineType: %s }] }\n' \
    "$i" "$region" "$provider" "$region" "$zone" "$machine" "$machine"
done
