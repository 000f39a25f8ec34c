# syntax=docker/dockerfile:1.7
# ntml training worker, GPU (NVIDIA, CUDA 12): NTML_BACKEND=gpu, @tensorflow/tfjs-node-gpu.
#   docker build -f infra/deploy/docker/training-gpu.Dockerfile -t ntml-training-gpu:0.1.0 .
# The binding is rebuilt against libtensorflow from PyPI's `tensorflow` wheel (built with
# CUDA); CUDA and cuDNN user-space libraries come from the pinned nvidia-* wheels that
# `tensorflow[and-cuda]==2.21.0` resolves to (gpu-requirements.txt). The GPU driver comes from
# the node through the NVIDIA container toolkit / device plugin. tfjs-node-gpu is installed
# here only: as a package dependency its install script would download on every machine.
# Not yet run on a GPU in this project's CI (no GPU there): see docs/deployment.md.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip g++ make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY activities activities
COPY cli cli
COPY core core
COPY infra/stack infra/stack
COPY schemas schemas
COPY store store
COPY telemetry telemetry
COPY workers workers
COPY workflows workflows
# compile, drop the dev packages, then add tfjs-node-gpu (after the prune, which would remove it)
RUN node_modules/.bin/tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm install --no-save --omit=dev --ignore-scripts --no-audit --no-fund @tensorflow/tfjs-node-gpu@4.22.0
ARG TF_WHEEL=tensorflow==2.21.0
COPY infra/native/libtensorflow_from_wheel.py infra/native/
RUN python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 "$TF_WHEEL" -d /tmp/wheels \
 && python3 infra/native/libtensorflow_from_wheel.py /tmp/wheels/*.whl node_modules/@tensorflow/tfjs-node-gpu/deps \
 && rm -rf /tmp/wheels \
 && echo '{"tf-lib":"wheel"}' > node_modules/@tensorflow/tfjs-node-gpu/scripts/custom-binary.json \
 && npm_config_nodedir=/usr/local npm rebuild @tensorflow/tfjs-node-gpu \
 && test -f node_modules/@tensorflow/tfjs-node-gpu/lib/napi-v8/tfjs_binding.node
# CUDA 12 / cuDNN 9 runtime libraries, pinned; one folder for LD_LIBRARY_PATH
COPY infra/deploy/docker/gpu-requirements.txt /tmp/gpu-requirements.txt
RUN python3 -m pip install --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux2010_x86_64 --platform manylinux_2_12_x86_64 \
      --target /opt/nvidia-wheels -r /tmp/gpu-requirements.txt \
 && mkdir -p /opt/cuda/lib \
 && for d in /opt/nvidia-wheels/nvidia/*/lib; do cp -a "$d"/. /opt/cuda/lib/; done \
 && rm -rf /opt/nvidia-wheels
# (loading the backend needs a GPU and its driver, which a build machine lacks: checked at worker start)

FROM ${NODE_IMAGE}
WORKDIR /app
# CUDA_CACHE_PATH: the manifests mount the root file system read-only and /tmp writable
ENV NODE_ENV=production \
    NTML_BACKEND=gpu \
    LD_LIBRARY_PATH=/opt/cuda/lib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_CACHE_PATH=/tmp/cuda-cache
COPY --from=build /opt/cuda/lib /opt/cuda/lib
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
STOPSIGNAL SIGTERM
CMD ["node", "dist/workers/training.js"]
