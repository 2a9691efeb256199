#!/usr/bin/env bash
# Sets up procfs-view on a Debian machine as root: the Debian packages it needs (libfuse3
# to build pyfuse3, fuse3 for fusermount3, the procps/util-linux/busybox clients the tests
# drive, strace to hold a reply back in one) and a virtualenv in .venv with procfs-view and its dev tools. Idempotent.
#   scripts/setup.sh          set up only
#   scripts/setup.sh --run    set up, then run the daemon at /var/lib/lxcfs (foreground)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv procps util-linux systemd
          openssl busybox-static strace)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[dev]'

if [ "${1:-}" = "--run" ]; then
  shift
  exec .venv/bin/procfs-view "$@" /var/lib/lxcfs
fi
