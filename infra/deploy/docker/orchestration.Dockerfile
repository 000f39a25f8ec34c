# syntax=docker/dockerfile:1.7
# ntml orchestration worker: runs the workflow code only (no TensorFlow, no store access).
#   docker build -f infra/deploy/docker/orchestration.Dockerfile -t ntml-orchestration:0.1.0 .
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
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
RUN node_modules/.bin/tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund
# the workflow bundle must build (webpack, at worker start): fail here instead of in the cluster
RUN node -e "require('./dist/workers/createWorkers.js').workflowBundle().then(b => console.log('workflow bundle', b.code.length, 'bytes'))"

FROM ${NODE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
STOPSIGNAL SIGTERM
CMD ["node", "dist/workers/orchestration.js"]
