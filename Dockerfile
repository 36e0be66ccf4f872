# vpc-ipam image: the daemon (vpc-ipamd), the janitor, and the CNI plugin executable that the
# DaemonSet's init container installs on the host. Node 24 runs the TypeScript directly (type
# stripping), so the runtime stage ships src/ and production node_modules, no build output but
# the plugin.
#
#   docker build -t vpc-ipam:dev .

# ---- build: the CNI shim (dist/vpc-cni, static Go) and the Node plugin it falls back to
# (dist/vpc-cni-node, a single executable) ----
FROM node:24-bookworm-slim AS build
# Go for the shim (scripts/build-cni.ts runs `go build`, CGO_ENABLED=0: no C toolchain needed).
COPY --from=golang:1.26-bookworm /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the image already has Node 24; the "node" devDependency need not fetch one.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
RUN npm run build && test -x dist/vpc-cni && test -x dist/vpc-cni-node && test -f dist/vpc-ipamd/vpc-ipamd.mjs

# ---- production dependencies only ----
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime ----
FROM node:24-bookworm-slim
# iproute2 and iptables: the daemon programs routes, rules and SNAT through them; util-linux
# (nsenter): it wires pods inside their netns for the CNI shim.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iptables util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY --from=build /src/dist/vpc-cni /src/dist/vpc-cni-node /opt/vpc-ipam/bin/
# The daemon bundled to plain JavaScript (scripts/bundle-daemon.ts): no type stripper in memory.
COPY --from=build /src/dist/vpc-ipamd ./dist/vpc-ipamd
# The janitor runs as this user (the DaemonSet runs as root with only NET_ADMIN/NET_RAW).
USER 65532:65532
ENTRYPOINT []
# --optimize-for-size: src/ipam-daemon/node-flags.ts (a small young generation keeps RSS flat).
CMD ["node", "--optimize-for-size", "/app/dist/vpc-ipamd/vpc-ipamd.mjs"]
