#!/usr/bin/env bash
# Every cpu-tier benchmark sweep of bench/specs, one after the other, each a sitting on the
# benchmark's own state in git (bench/state/README.md):
#   1. import the bundles of the specs before it in the protocol's order (its bases, below), then
#      bench/state/<name>.ntmlb, if it is there (cells finished in earlier sittings, and the
#      expensive stages: backdoored models, NT-ML's and the baselines' models);
#   2. run the sweep, resumed in place (stored cells are reused, stages in progress continue from
#      their last checkpoint; the spec's concurrency gives the two lanes), until it ends, Ctrl-C,
#      or RUN_CPU_SECONDS runs out;
#   3. export the sweep's portable state back to bench/state/<name>.ntmlb (no data sets, no
#      poisoned copies: those are regenerated from the seed), with the newest checkpoint of each
#      stage in progress (--in-progress: a 2-3 hour stage then continues in the next sitting, on
#      any machine, instead of restarting), against its bases: what an earlier spec's bundle
#      carries (attacks-cpu's backdoored models) is left out and relied on; regenerate
#      bench/results/<name>/;
#   4. check that every bundle's bases still carry what it relies on (a base exported again
#      without something is repaired by exporting its dependents again from this store, which
#      still holds it), and print the size of bench/state/, loudly when it is over its 60 MB budget.
# Then commit bench/state/ and bench/results/ (the script prints the command). An interrupted
# sweep still gets steps 3 and 4, and the chain stops there; run the script again to continue.
# The specs share their stages (same data, clean reserve and seeds), so this order computes
# every backdoored model once, in attacks-cpu, and the rest reuse them.
#   NTML_CIFAR10_DIR=/path/to/cifar-10-batches-bin bash bench/run-cpu.sh [spec ...]
# BENCH_SPECS_DIR, BENCH_STATE_DIR and BENCH_RESULTS_DIR move the three folders (the tests run
# the script on a ci-tier spec of their own this way; such specs need no CIFAR-10);
# BENCH_ORDER and BENCH_KEEP_STAGES replace the order and the per-spec stage policy below.
set -euo pipefail
cd "$(dirname "$0")/.."
specs_dir="${BENCH_SPECS_DIR:-bench/specs}"
state_dir="${BENCH_STATE_DIR:-bench/state}"
results_dir="${BENCH_RESULTS_DIR:-bench/results}"
if [ -z "${BENCH_SPECS_DIR:-}" ]; then
  : "${NTML_CIFAR10_DIR:?set NTML_CIFAR10_DIR to the cifar-10-batches-bin folder}"
fi
case "${NTML_STORE:-}" in
  ""|s3://*) ;;
  *) echo "run-cpu: NTML_STORE=$NTML_STORE is not S3: bench state must come from the S3 store (a filesystem store's records name its absolute paths); unset it to use the embedded stack" >&2; exit 2 ;;
esac
[ -f dist/bench/stateBundle.js ] || { echo "run-cpu: dist/bench/stateBundle.js is missing: build first (npx tsc -p tsconfig.json)" >&2; exit 2; }

# the order of the protocol (docs/protocol.md): the backdoored models, the NT-ML screen on them
# (issue 20), the WaNet and target-class diagnostics, the baselines, then the table; the NT-ML
# screens of bench/specs that predate the protocol are history and run only when named.
# It is also the order of the bases: a spec's bundle is exported against the bundles of the
# specs before it, never after, so no two bundles rely on each other (the exporter refuses a
# cycle too); a spec outside the order has no bases.
read -r -a order <<< "${BENCH_ORDER:-attacks-cpu wanet-epochs-cpu ntml-six-dev wanet-tc-cpu targets-cpu defenses-cpu table-cpu}"
# Specs whose bundle keeps only its cell records and the listed stages (none: records only),
# leaving out the purified models no kept entry carries, to fit the budget (bench/state/README.md,
# "Size budget": attacks-cpu, the base, keeps every stage; its followers would not fit):
# "spec:stage,stage" or "spec:none", separated by spaces. table-cpu keeps its backdoored models
# (report seeds: nothing before it has them; ~24 MB with the Input-Aware runs' cut final
# checkpoints, bench/state/README.md): without them every sitting on a fresh machine would retrain
# the f_std of its unfinished cells (Narcissus ~2.5 h, Input-Aware ~1 h of a lane each).
keep_stages_policy="${BENCH_KEEP_STAGES-wanet-epochs-cpu:none ntml-six-dev:none targets-cpu:none defenses-cpu:none table-cpu:standardTraining}"
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  specs=("${order[@]}")
fi
for name in "${specs[@]}"; do
  [ -f "$specs_dir/$name.yaml" ] || { echo "run-cpu: no spec $specs_dir/$name.yaml" >&2; exit 2; }
done

# Narcissus' surrogate trains on a public out-of-distribution set: Fashion-MNIST, by default from
# Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist, docs/attacks.md).
# Without it every Narcissus cell fails at once ("pood.path: ... file not found"), so a sitting
# whose specs have Narcissus cells installs it first (root, as on the build VM) or stops here.
pood_dir=/usr/share/datasets/fashion-mnist
if [ -z "${BENCH_SPECS_DIR:-}" ] && [ ! -e "$pood_dir/train-images-idx3-ubyte.gz" ] && [ ! -e "$pood_dir/train-images-idx3-ubyte" ]; then
  for name in "${specs[@]}"; do
    if grep -q "name: narcissus" "$specs_dir/$name.yaml"; then
      echo "run-cpu: $name has Narcissus cells and $pood_dir is missing: installing Debian's dataset-fashion-mnist" >&2
      if [ "$(id -u)" -ne 0 ] || ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }; then
        echo "run-cpu: could not install dataset-fashion-mnist; install it (or set the spec's attack.pood.path) and run again" >&2
        exit 2
      fi
      break
    fi
  done
fi

# the bundles of the specs before $1 in the order that are there, one file a line
bases_of() {
  local o
  for o in "${order[@]}"; do
    [ "$o" = "$1" ] && return 0
    [ -f "$state_dir/$o.ntmlb" ] && echo "$state_dir/$o.ntmlb"
  done
  return 0 # not in the order: no bases (a history spec)
}
in_order() {
  local o
  for o in "${order[@]}"; do [ "$o" = "$1" ] && return 0; done
  return 1
}
# exports sweep $1's state against its bases (and under its stage policy, if it has one)
export_state() {
  local args=(export --sweep "$1" --out "$state_dir/$1.ntmlb" --in-progress) base pair
  if in_order "$1"; then
    while read -r base; do [ -n "$base" ] && args+=(--base "$base"); done < <(bases_of "$1")
  fi
  for pair in $keep_stages_policy; do
    [ "${pair%%:*}" = "$1" ] && args+=(--keep-stages "${pair#*:}")
  done
  node dist/bench/stateBundle.js "${args[@]}"
}
# the bundles whose bases no longer carry what they rely on are exported again from this store
# (it imported the old bases, so it still holds what they dropped); then the check must pass
check_state() {
  local stale dep
  stale="$(node dist/bench/stateBundle.js check "$state_dir")" && { echo "$stale" >&2; return 0; }
  # in the order, so that a dependent is exported against bases already made whole (only specs
  # of the order have bases, so only they can be stale)
  for dep in "${order[@]}"; do
    grep -qx "stale: $dep.ntmlb" <<< "$stale" || continue
    echo "run-cpu: exporting $dep again against its current bases" >&2
    # its other bases too (this sitting may not have imported them), then the dependent itself
    while read -r base; do [ -n "$base" ] && bin/ntml store import "$base" > /dev/null; done < <(bases_of "$dep")
    bin/ntml store import "$state_dir/$dep.ntmlb" && export_state "$dep" || true
  done
  node dist/bench/stateBundle.js check "$state_dir" >&2 && return 0
  echo "run-cpu: !!! the bundles of $state_dir do not import in order (above): do not commit them !!!" >&2
  return 4
}

mkdir -p "$state_dir"
interrupted=0
for name in "${specs[@]}"; do
  spec="$specs_dir/$name.yaml"
  state="$state_dir/$name.ntmlb"
  echo "run-cpu: $name ($(date -u +%FT%TZ))" >&2
  if in_order "$name"; then
    while read -r base; do
      [ -n "$base" ] || continue
      echo "run-cpu: importing the base $base" >&2
      bin/ntml store import "$base"
    done < <(bases_of "$name")
  fi
  if [ -f "$state" ]; then
    echo "run-cpu: importing $state" >&2
    bin/ntml store import "$state"
  fi

  # Ctrl-C (or the time limit) stops the sweep; this sitting still exports what it finished
  trap 'interrupted=1' INT
  rc=0
  if [ -n "${RUN_CPU_SECONDS:-}" ]; then
    timeout --signal=INT --kill-after=120 "$RUN_CPU_SECONDS" bin/ntml sweep start --spec "$spec" --out "$results_dir/$name" || rc=$?
    [ "$rc" -eq 124 ] && interrupted=1
  else
    bin/ntml sweep start --spec "$spec" --out "$results_dir/$name" || rc=$?
  fi
  trap - INT
  [ "$rc" -ne 0 ] && echo "run-cpu: sweep $name stopped (exit $rc); exporting what it finished" >&2

  # the sweep is in the store once its spec record is; an interruption before that leaves nothing to keep
  if export_state "$name"; then
    bin/ntml sweep report "$name" --out "$results_dir/$name" > /dev/null
  else
    echo "run-cpu: nothing exported for $name" >&2
  fi
  size_rc=0
  check_state || size_rc=$?
  node dist/bench/stateBundle.js size "$state_dir" || { r=$?; [ "$size_rc" -ne 0 ] || size_rc=$r; }
  echo "run-cpu: to keep this sitting: git add $state_dir $results_dir/$name && git commit -m \"bench: $name sitting ...\"" >&2
  if [ "$interrupted" -eq 1 ] || [ "$rc" -ne 0 ]; then exit "$([ "$rc" -ne 0 ] && echo "$rc" || echo 130)"; fi
  [ "$size_rc" -eq 0 ] || exit "$size_rc"
done
