#!/usr/bin/env bash
# Every cpu-tier benchmark sweep of bench/specs, one after the other, each resumed in place (cells
# already stored are reused, stages in progress continue from their last checkpoint), each ending
# with its report in bench/results/<name>/. Ctrl-C stops the sweep in progress and the chain; run
# the script again to continue. The specs share their stages (same data, clean reserve and seeds),
# so this order computes every backdoored model once, in attacks-cpu, and the rest reuse them.
#   NTML_CIFAR10_DIR=/path/to/cifar-10-batches-bin bash bench/run-cpu.sh [spec ...]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NTML_CIFAR10_DIR:?set NTML_CIFAR10_DIR to the cifar-10-batches-bin folder}"

specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  # cheapest first: the attacks (issue 3), the NT-ML ablations (issue 4), then the tables
  specs=(attacks-cpu ntml-ablation-cpu ntml-labels-cpu ntml-switches-cpu defenses-cpu table-cpu)
fi
for name in "${specs[@]}"; do
  spec="bench/specs/$name.yaml"
  [ -f "$spec" ] || { echo "run-cpu: no spec $spec" >&2; exit 2; }
  echo "run-cpu: $name ($(date -u +%FT%TZ))" >&2
  bin/ntml sweep start --spec "$spec" --out "bench/results/$name"
done
