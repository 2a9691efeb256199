#!/usr/bin/env bash
# Runs the test suite: everything on this host (unit, fixture, real-cgroup and real-mount
# tests; the latter skip with a reason without root or /dev/fuse), then the cgroup v2
# selection (-m cgroup2vm) inside a VM with a pure cgroup2 hierarchy when the VM tool is
# present (../shared/tools/cgroup2-vm) and CI=true or PROCFS_VIEW_VM=1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || bash scripts/setup.sh

.venv/bin/python -m pytest -q "$@"

vm_tool=../shared/tools/cgroup2-vm
if [ -x "$vm_tool" ] && { [ "${CI:-}" = "true" ] || [ "${PROCFS_VIEW_VM:-}" = "1" ]; }; then
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  }
  echo "== cgroup v2 selection inside $vm_tool" >&2
  # Through a pipe: the VM's console writes at offset 0 of a seekable stdout, which would
  # overwrite the host run's output in a log file.
  "$vm_tool" --timeout 900 -- .venv/bin/python -m pytest -q -p no:cacheprovider -m cgroup2vm tests 2>&1 | cat
fi
