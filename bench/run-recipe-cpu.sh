#!/usr/bin/env bash
# Issue 19 item 6: the cpu tier's standard model, ntml vs PyTorch, the earlier cosine recipe vs one-cycle +
# Nesterov, clean and BadNets-poisoned, seeds 1-3 (bench/recipeCompare.ts); writes
# bench/results/recipe-cpu/report.{json,md}. Extra arguments go to recipeCompare (e.g. --sets badnets).
# Stopped (Ctrl-C), it continues where it stopped when run again with the same arguments.
# Installs the PyTorch reference venv (~/.cache/ntml/bench-venv) on first use.
#   NTML_CIFAR10_DIR=/path/to/cifar-10-batches-bin bash bench/run-recipe-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${NTML_CIFAR10_DIR:?set NTML_CIFAR10_DIR to the cifar-10-batches-bin folder}"
npx tsc -p tsconfig.json
exec node dist/bench/recipeCompare.js --out bench/results/recipe-cpu "$@"
