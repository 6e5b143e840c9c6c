# One image for every PipeServe process: the command picks the service, e.g.
#   docker run pipeserve node dist/services/node/main.js --node-id node1
# HEALTHCHECK_URL tells the built-in health check what to probe (HTTP for the api, grpc:// with
# grpc.health.v1 for the gRPC services); docker-compose.yml sets it per service.
#
# Three stages: `build` compiles with every dependency, `production-dependencies` installs only
# what runs, and `runtime` copies the two results onto a fresh base, so neither the dev
# dependencies, npm's cache, the TypeScript sources nor the files deleted below ever reach an
# image layer.

FROM node:22-bookworm-slim AS build
WORKDIR /app
# .npmrc travels with the lockfile: it keeps dependency install scripts from running (the only
# ones, onnxruntime-node's, would download CUDA libraries), with every npm version.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
COPY protos ./protos
RUN npm run build

FROM node:22-bookworm-slim AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node ships its CPU libraries for every OS and architecture (290 MB); keep only this
# image's own (linux/x64 on amd64). Source maps of dependencies serve no one at run time.
RUN npm ci --omit=dev --no-audit --no-fund \
    && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d \
         ! -path "*/linux/$(node -p process.arch)" -exec rm -rf {} + \
    && test -f "node_modules/onnxruntime-node/bin/napi-v6/linux/$(node -p process.arch)/onnxruntime_binding.node" \
    && find node_modules -type f -name '*.map' -delete

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production \
    CONFIG_PATH=/app/config.json \
    MODEL_DIR=/models/default \
    HEALTHCHECK_URL=http://127.0.0.1:8000/health
WORKDIR /app
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json marks the project root (with protos/); the gRPC services load the .proto files at
# run time, and the api serves its playground and docs pages as they are.
COPY package.json ./
COPY protos ./protos
COPY services/api/public ./services/api/public
COPY config.json ./config.json
# A named volume mounted at /models starts with this directory's owner, so model-init (non-root)
# can write the model into it.
RUN mkdir -p /models && chown 1000:1000 /models
# Numeric uid (the image's `node` user) so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["sh", "-c", "node dist/tools/healthcheck.js \"$HEALTHCHECK_URL\""]
CMD ["node", "dist/services/api/main.js"]
