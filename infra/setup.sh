#!/usr/bin/env bash
# Installs everything ntml needs on a fresh machine, reaching only the package registries:
# npm packages, the native TensorFlow backend (from the tensorflow-cpu wheel on PyPI), the
# Temporal CLI and versitygw (go install), then compiles the TypeScript.
# Idempotent: every step is skipped when its stamp says the result is current.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${NTML_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ntml}
TOOLS=$ROOT/.tools
TF_WHEEL_VERSION=2.21.0
TEMPORAL_CLI_VERSION=v1.5.1
VERSITYGW_VERSION=v1.7.0
mkdir -p "$CACHE" "$TOOLS/bin" "$TOOLS/stamps"

say() { echo "[setup] $*" >&2; }
sha() { sha256sum "$@" | sha256sum | cut -c1-16; }
need() { command -v "$1" >/dev/null 2>&1 || { say "missing '$1': $2"; exit 1; }; }

need node "install Node.js 20 or newer"
need npm "install npm (comes with Node.js)"
need go "install Go 1.22 or newer (Debian: golang)"
need python3 "install Python 3 with pip (needed once to fetch the tensorflow-cpu wheel)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<3)) process.exit(1)' \
  || { say "Node.js >= 20.3 required, found $(node --version)"; exit 1; }

# 1. npm packages, without install scripts: tfjs-node's would download libtensorflow from
#    Google storage, which is unreachable here and answers 403 online (tfjs#8742).
lock_stamp=$(sha package-lock.json package.json)
if [ "$(cat "$TOOLS/stamps/npm" 2>/dev/null)" != "$lock_stamp" ] || [ ! -d node_modules ]; then
  say "npm ci (no install scripts)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  rm -f "$TOOLS/stamps/native"
  echo "$lock_stamp" > "$TOOLS/stamps/npm"
fi

# 2. Native TensorFlow backend built from the tensorflow-cpu wheel (cached outside the repo).
TFJS=node_modules/@tensorflow/tfjs-node
LIBTF=$CACHE/libtensorflow-$TF_WHEEL_VERSION
native_stamp="tf-$TF_WHEEL_VERSION-$lock_stamp-$(node --version)"
if [ "$(cat "$TOOLS/stamps/native" 2>/dev/null)" != "$native_stamp" ] || ! ls $TFJS/lib/napi-v*/tfjs_binding.node >/dev/null 2>&1; then
  if [ ! -f "$LIBTF/lib/libtensorflow_cc.so.2" ]; then
    wheel=$(ls "$CACHE"/wheels/tensorflow_cpu-$TF_WHEEL_VERSION-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then
      say "downloading tensorflow-cpu==$TF_WHEEL_VERSION wheel from PyPI (~274 MB, once)"
      python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        "tensorflow-cpu==$TF_WHEEL_VERSION" -d "$CACHE/wheels" >&2
      wheel=$(ls "$CACHE"/wheels/tensorflow_cpu-$TF_WHEEL_VERSION-*.whl | head -1)
    fi
    say "unpacking libtensorflow from $(basename "$wheel")"
    python3 infra/native/libtensorflow_from_wheel.py "$wheel" "$LIBTF"
  fi
  say "building the tfjs-node binding against libtensorflow $TF_WHEEL_VERSION"
  rm -rf "$TFJS/deps"
  ln -s "$LIBTF" "$TFJS/deps"
  echo '{"tf-lib":"wheel"}' > "$TFJS/scripts/custom-binary.json"
  npm_config_nodedir=${npm_config_nodedir:-/usr} npm rebuild @tensorflow/tfjs-node --loglevel=error >&2
  echo "$native_stamp" > "$TOOLS/stamps/native"
fi

# 3. Temporal CLI (dev server with SQLite) and versitygw (S3 server), pinned, project-local.
go_tool() { # name module version
  local name=$1 module=$2 version=$3
  if [ "$(cat "$TOOLS/stamps/$name" 2>/dev/null)" != "$version" ] || [ ! -x "$TOOLS/bin/$name" ]; then
    say "go install $module@$version (cold builds take a few minutes; Go caches them)"
    GOBIN="$TOOLS/bin" GOFLAGS=-buildvcs=false go install "$module@$version" >&2
    echo "$version" > "$TOOLS/stamps/$name"
  fi
}
go_tool temporal github.com/temporalio/cli/cmd/temporal "$TEMPORAL_CLI_VERSION"
go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"

# 4. TypeScript -> dist/
src_stamp=$(find core store schemas activities workflows workers telemetry infra cli test bench examples -type f \( -name '*.ts' -o -name '*.json' -o -name '*.yaml' \) 2>/dev/null | sort | xargs cat tsconfig.json | sha256sum | cut -c1-16)
if [ "$(cat "$TOOLS/stamps/build" 2>/dev/null)" != "$src_stamp" ] || [ ! -d dist ]; then
  say "compiling TypeScript"
  rm -rf dist
  node_modules/.bin/tsc -p tsconfig.json
  # Recorded workflow histories and other test data travel next to the compiled tests.
  if [ -d test/histories ]; then mkdir -p dist/test && cp -r test/histories dist/test/; fi
  echo "$src_stamp" > "$TOOLS/stamps/build"
fi
