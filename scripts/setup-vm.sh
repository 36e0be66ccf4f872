#!/usr/bin/env bash
# Installs what the VM suites need (test/e2e/vm.test.ts, test/helpers/vm.ts), idempotently:
# Debian's stock kernel (linux-image-amd64, 6.1 on bookworm) and qemu-system-x86 from apt, and
# virtme-ng (PyPI, pinned) in its own venv under the tools cache. The kernel goes to /boot only;
# the machine keeps booting its own. Called by scripts/setup.sh; re-running skips what is there.
set -euo pipefail
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
tools="${VPC_IPAM_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vpc-ipam/tools}"
VIRTME_NG_VERSION=1.42
say() { printf '[setup-vm] %s\n' "$*" >&2; }

need_apt=()
[ -x /usr/bin/qemu-system-x86_64 ] || need_apt+=(qemu-system-x86)
compgen -G '/boot/vmlinuz-6.1.0-*-amd64' >/dev/null || need_apt+=(linux-image-amd64)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: ${need_apt[*]} (run as root, or apt-get install them)"; exit 1
  fi
  say "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
compgen -G '/boot/vmlinuz-6.1.0-*-amd64' >/dev/null ||
  { say "linux-image-amd64 did not install a 6.1 kernel in /boot (not Debian bookworm?)"; exit 1; }

venv="$tools/vng"
if [ ! -x "$venv/bin/vng" ] || [ "$("$venv/bin/vng" --version 2>/dev/null)" != "virtme-ng $VIRTME_NG_VERSION" ]; then
  say "installing virtme-ng $VIRTME_NG_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION"
fi
say "ready: $(ls /boot/vmlinuz-6.1.0-*-amd64 | tail -1), $("$venv/bin/vng" --version)"
