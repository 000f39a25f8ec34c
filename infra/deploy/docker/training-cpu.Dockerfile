# syntax=docker/dockerfile:1.7
# ntml training worker, CPU: runs the NT-ML activities on the native TensorFlow backend.
#   docker build -f infra/deploy/docker/training-cpu.Dockerfile -t ntml-training-cpu:0.1.0 .
# (from the repository root; the build context is the repository, see docs/deployment.md)
# Everything is fetched from package registries: npm for the Node packages, PyPI for the
# tensorflow-cpu wheel whose libtensorflow the tfjs-node binding is rebuilt against (the
# binding's own install script downloads from Google storage, which answers 403).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip g++ make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
# libtensorflow from the wheel, laid out where the binding looks for it, then the binding itself
ARG TF_WHEEL=tensorflow-cpu==2.21.0
COPY infra/native/libtensorflow_from_wheel.py infra/native/
RUN python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 "$TF_WHEEL" -d /tmp/wheels \
 && python3 infra/native/libtensorflow_from_wheel.py /tmp/wheels/*.whl node_modules/@tensorflow/tfjs-node/deps \
 && rm -rf /tmp/wheels \
 && echo '{"tf-lib":"wheel"}' > node_modules/@tensorflow/tfjs-node/scripts/custom-binary.json \
 && npm_config_nodedir=/usr/local npm rebuild @tensorflow/tfjs-node
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
RUN node_modules/.bin/tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund
# the image must load the native backend, or it is not worth shipping
RUN NTML_BACKEND=cpu node -e "const t=require('./dist/core/tf.js'); console.log('TensorFlow', t.nativeTensorflowVersion())"

FROM ${NODE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production \
    NTML_BACKEND=cpu
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
# SIGTERM (a deploy, a node drain) lets running stages checkpoint their epoch and hand over
STOPSIGNAL SIGTERM
CMD ["node", "dist/workers/training.js"]
