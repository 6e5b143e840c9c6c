# One image for every PipeServe process: the command picks the service, e.g.
#   docker run pipeserve node dist/services/node/main.js --node-id node1
# HEALTHCHECK_URL tells the built-in health check what to probe (HTTP for the api, grpc:// with
# grpc.health.v1 for the gRPC services); docker-compose.yml sets it per service.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# .npmrc travels with the lockfile so `npm ci` resolves exactly as on a developer machine.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
COPY protos ./protos
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    CONFIG_PATH=/app/config.json \
    MODEL_DIR=/models/default \
    HEALTHCHECK_URL=http://127.0.0.1:8000/health
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The gRPC services load the .proto files at run time; the api serves its playground and docs pages as they are.
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
