"""--metrics-address: a real daemon's Prometheus endpoint counts the reads we make."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request

import pytest

from tests.cgroups import test_cgroup
from tests.integration.helpers import MIB, TIMEOUT, StartDaemon

pytestmark = [pytest.mark.root, pytest.mark.fuse]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_scrape_counts_each_read_per_file(start_daemon: StartDaemon) -> None:
    port = free_port()
    daemon = start_daemon(args=["--metrics-address", f"127.0.0.1:{port}", "-l"])
    meminfo, stat = str(daemon.path("proc/meminfo")), str(daemon.path("proc/stat"))
    with test_cgroup(memory_limit=256 * MIB) as cgroup:
        for _ in range(5):
            cgroup.run(["cat", meminfo])
        for _ in range(3):
            cgroup.run(["cat", stat])
        cgroup.run(["cat", str(daemon.path("proc/loadavg"))])
        samples = scrape(port)
    assert samples['procfs_view_requests_total{file="proc/meminfo"}'] == 5
    assert samples['procfs_view_requests_total{file="proc/stat"}'] == 3
    assert samples['procfs_view_render_seconds_count{file="proc/meminfo"}'] == 5
    assert samples['procfs_view_cgroups_tracked{state="stat_counters"}'] >= 1
    assert samples['procfs_view_cgroups_tracked{state="loadavg"}'] == 1
    assert "procfs_view_loadavg_sampling_seconds" in samples
    assert samples["procfs_view_virtualized"] == 1


def test_virtualization_state_is_a_metric(start_daemon: StartDaemon) -> None:
    """SIGUSR2 toggles, as in LXCFS, and signals sent in quick succession can merge into
    one: the metric says which state the daemon is in."""
    port = free_port()
    daemon = start_daemon(args=["--metrics-address", f"127.0.0.1:{port}"])
    assert scrape(port)["procfs_view_virtualized"] == 1
    daemon.send(signal.SIGUSR2)
    daemon.wait_for_log("virtualization off")
    assert scrape(port)["procfs_view_virtualized"] == 0
