#!/usr/bin/env bash
# Builds the real AWS VPC CNI (aws-k8s-agent = ipamd, routed-eni-cni-plugin = its CNI plugin) from
# the Go module proxy, for the takeover tests (a node first run by aws-node, then switched to
# vpc-ipam) and the side-by-side benchmarks. Called by scripts/setup.sh; idempotent: the binaries
# are cached by version under the tools dir and rebuilt only when missing.
#   <tools>/aws-vpc-cni/<version>/aws-k8s-agent
#   <tools>/aws-vpc-cni/<version>/routed-eni-cni-plugin
# The module is built through a throwaway wrapper module that requires it: its own go.mod has
# replace directives (which Go ignores in a dependency), so the wrapper repeats them, read from
# the downloaded go.mod rather than restated here.
set -euo pipefail
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
version="${AWS_VPC_CNI_VERSION:-v1.23.2}"
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/vpc-ipam/tools}"
out="$tools/aws-vpc-cni/$version"
say() { printf '[setup] %s\n' "$*" >&2; }

if [ -x "$out/aws-k8s-agent" ] && [ -x "$out/routed-eni-cni-plugin" ]; then
  exit 0
fi
command -v go >/dev/null || { say "go is needed to build the AWS VPC CNI (golang-go)"; exit 1; }
say "building the AWS VPC CNI $version (aws-k8s-agent, routed-eni-cni-plugin) from the Go module proxy (several minutes on a fresh machine)"

mod=github.com/aws/amazon-vpc-cni-k8s
work="$tools/aws-vpc-cni/.build-$version-$$"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init vpc-ipam.local/aws-vpc-cni-build >/dev/null 2>&1
GOFLAGS=-mod=mod go mod edit -require="$mod@$version"
modfile=$(GOFLAGS=-mod=mod go mod download -json "$mod@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$modfile" ] || { say "could not download $mod@$version"; exit 1; }
# Single-line replace directives only (the module has two; a block form would need more parsing).
grep -E '^replace [^(]' "$modfile" >>go.mod || true
# A tools.go-style blank import so `go mod tidy` keeps every package the two commands need.
cat >tools.go <<EOF
//go:build tools

package tools

import (
	_ "$mod/cmd/aws-k8s-agent"
	_ "$mod/cmd/routed-eni-cni-plugin"
)
EOF
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
mkdir -p "$work/bin"
# The daemon refuses a plugin whose version differs from its own ("wrong client version"): both
# get the same stamp (the daemon's in pkg/version, the plugin's in its main package).
CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w -X $mod/pkg/version.Version=$version -X main.version=$version -X $mod/pkg/awsutils/awssession.version=$version" \
  -o "$work/bin/" "$mod/cmd/aws-k8s-agent" "$mod/cmd/routed-eni-cni-plugin"
mkdir -p "$out"
for b in aws-k8s-agent routed-eni-cni-plugin; do
  mv -f "$work/bin/$b" "$out/$b.tmp.$$"
  mv -f "$out/$b.tmp.$$" "$out/$b"
done
say "AWS VPC CNI $version in $out"
