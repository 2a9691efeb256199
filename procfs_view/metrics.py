"""Prometheus metrics for operators (``--metrics-address``, off by default).

What a node operator watches: how often each file is read, how often a container got the
host file instead of its own view (and why), how long rendering takes, how much
per-cgroup state the daemon holds, and how long a loadavg sampling round takes. A
registry of our own (not prometheus_client's global one) keeps reloads and tests apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

#: Why a request got the host file: the caller is the host (root cgroup, host pid
#: namespace, option off), the caller exited, or the view failed (bad cgroup data, bug).
FALLBACK_REASONS = ("host", "gone", "error")
_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class Recorder(Protocol):
    """What the service reports per request (a no-op unless metrics are on)."""

    def request(self, path: str, outcome: str, seconds: float) -> None: ...


class NoMetrics:
    """The default: metrics off, nothing recorded."""

    def request(self, path: str, outcome: str, seconds: float) -> None:
        return None


class PrometheusMetrics:
    """Counters, a latency histogram and gauges read at scrape time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "procfs_view_requests",
            "Opens of a served file (each computes or reuses one answer)",
            ["file"],
            registry=self.registry,
        )
        self.errors = Counter(
            "procfs_view_errors",
            "Requests whose view failed (bad or missing cgroup data, or a bug)",
            ["file"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "procfs_view_host_fallbacks",
            "Requests answered with the host file, by reason (host, gone, error)",
            ["file", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "procfs_view_render_seconds",
            "Time to compute (or fetch from the cache) one answer",
            ["file"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cgroups = Gauge(
            "procfs_view_cgroups_tracked",
            "cgroups the daemon keeps state for, by kind of state",
            ["state"],
            registry=self.registry,
        )
        self.virtualized = Gauge(
            "procfs_view_virtualized",
            "1 while containers get their own views, 0 while SIGUSR2 has them get the host's",
            registry=self.registry,
        )
        self.loadavg_round = Gauge(
            "procfs_view_loadavg_sampling_seconds",
            "Duration of the last loadavg sampling round (-l)",
            registry=self.registry,
        )

    def request(self, path: str, outcome: str, seconds: float) -> None:
        self.requests.labels(path).inc()
        self.latency.labels(path).observe(seconds)
        if outcome == "error":
            self.errors.labels(path).inc()
        if outcome in FALLBACK_REASONS:
            self.fallbacks.labels(path, outcome).inc()

    def track(self, state: str, count: Callable[[], float]) -> None:
        """Report ``count()`` as the number of cgroups holding ``state`` at each scrape."""
        self.cgroups.labels(state).set_function(count)

    def track_virtualization(self, on: Callable[[], bool]) -> None:
        self.virtualized.set_function(lambda: 1.0 if on() else 0.0)

    def track_loadavg_round(self, seconds: Callable[[], float]) -> None:
        self.loadavg_round.set_function(seconds)

    def serve(self, address: str) -> None:
        """Serve /metrics over HTTP at ``HOST:PORT`` from a background thread."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)
        log.info("metrics at http://%s/metrics", address)


def parse_address(text: str) -> str:
    """Validate ``HOST:PORT`` (the argparse type of --metrics-address)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return f"{host}:{port}"
