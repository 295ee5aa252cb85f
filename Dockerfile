# syntax=docker/dockerfile:1
#
# teiplex images. Every command here is one the README and CI run outside Docker (`npm ci`,
# which runs no install script (.npmrc), then `npm run build`), then `npm prune --omit=dev` (tests, benchmarks and
# the TypeScript compiler stay out of the image); the runtime stages only copy the results.
#
#   docker build --target cpu -t teiplex:cpu .     # Node only: the built-in router runtime
#   docker build --target gpu -t teiplex:gpu .     # on TEI's gRPC image: both runtimes, CUDA
#
# Run: docker run -p 9000:9000 -p 9001:9001 -v teiplex-data:/data teiplex:cpu

ARG NODE_IMAGE=node:20-bookworm-slim
# TEI's gRPC build (text-embeddings-router with tei.v1 gRPC); pick the tag for your GPU generation.
ARG TEI_IMAGE=ghcr.io/huggingface/text-embeddings-inference:1.8-grpc

# ---- build: install (CPU onnxruntime), compile TypeScript ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY . .
RUN npm ci && npm run build && npm prune --omit=dev

# ---- build-gpu: the same, with onnxruntime-node's CUDA 12 execution provider ----
FROM ${NODE_IMAGE} AS build-gpu
WORKDIR /app
COPY . .
RUN npm ci && npm run install:cuda && npm run build && npm prune --omit=dev

# ---- cpu: Node only, router runtime ----
FROM ${NODE_IMAGE} AS cpu
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/proto ./proto
COPY --from=build /app/fixtures ./fixtures
COPY docker/config.toml /etc/teiplex/config.toml
RUN useradd --system --uid 10001 --home-dir /data teiplex && mkdir -p /data && chown teiplex /data
ENV HF_HOME=/data/hf NODE_ENV=production
USER teiplex
VOLUME ["/data"]
EXPOSE 9000 9001
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9000/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/teiplex.js"]
CMD ["serve", "--config", "/etc/teiplex/config.toml"]

# ---- gpu: TEI's gRPC image (text-embeddings-router on PATH) plus Node and teiplex ----
FROM ${TEI_IMAGE} AS gpu
COPY --from=build-gpu /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build-gpu /app/package.json /app/package-lock.json ./
COPY --from=build-gpu /app/node_modules ./node_modules
COPY --from=build-gpu /app/dist ./dist
COPY --from=build-gpu /app/bin ./bin
COPY --from=build-gpu /app/proto ./proto
COPY --from=build-gpu /app/fixtures ./fixtures
COPY docker/config.toml /etc/teiplex/config.toml
RUN useradd --system --uid 10001 --home-dir /data teiplex && mkdir -p /data && chown teiplex /data
ENV HF_HOME=/data/hf NODE_ENV=production TEI_BINARY_PATH=text-embeddings-router
USER teiplex
VOLUME ["/data"]
EXPOSE 9000 9001
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9000/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/teiplex.js"]
CMD ["serve", "--config", "/etc/teiplex/config.toml"]
