"""Metrics the service records per request: counts, errors, fallbacks by reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from procfs_view.metrics import PrometheusMetrics, parse_address
from procfs_view.options import ViewOptions
from procfs_view.service import ViewService
from tests.fixtures import FixtureHost

MIB = 1024 * 1024


def sample(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_requests_errors_and_fallbacks_per_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    host.add_process(700, "/ct", namespace="ct", nspid=(700, 1))
    host.add_process(701, "/")
    host.set_memory("/ct", 256 * MIB, 10 * MIB)
    metrics = PrometheusMetrics()
    service = ViewService(host.roots(), ViewOptions(), metrics=metrics)
    for _ in range(3):
        service.answer("proc/meminfo", 700)
    service.answer("proc/meminfo", 701)  # the root cgroup: the host file, no error
    service.answer("proc/meminfo", 99999)  # exited
    host.write("memory", "/ct", {"memory.max": "garbage"})
    service.answer("proc/meminfo", 700)
    meminfo = {"file": "proc/meminfo"}
    assert sample(metrics, "procfs_view_requests_total", **meminfo) == 6
    assert sample(metrics, "procfs_view_errors_total", **meminfo) == 1
    for reason, count in (("host", 1), ("gone", 1), ("error", 1)):
        assert (
            sample(metrics, "procfs_view_host_fallbacks_total", reason=reason, **meminfo) == count
        )
    assert sample(metrics, "procfs_view_render_seconds_count", **meminfo) == 6
    assert b"procfs_view_requests_total" in generate_latest(metrics.registry)


def test_gauges_read_their_source_at_scrape_time() -> None:
    metrics = PrometheusMetrics()
    tracked = [1, 2]
    metrics.track("stat_counters", lambda: len(tracked))
    tracked.append(3)
    assert sample(metrics, "procfs_view_cgroups_tracked", state="stat_counters") == 3


@pytest.mark.parametrize("text", ["nonsense", "host:", "host:0", "host:70000", ":x"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)


def test_good_address() -> None:
    assert parse_address("127.0.0.1:9100") == "127.0.0.1:9100"
