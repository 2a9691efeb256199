"""Soak: 64 readers in 32 cgroups for N minutes while cgroups come and go every second.

Opt-in (``pytest -m soak``; PROCFS_VIEW_SOAK_MINUTES, default 10). Passes when no reader
ever saw a MemTotal other than its own cgroup's limit, the daemon logged no warning, error
or traceback, and its RSS grew less than 5 MiB between the end of the warm-up and the end.
With PROCFS_VIEW_SOAK_RESULTS=FILE the figures are also written there (Markdown).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cgroups import TestCgroup, test_cgroup
from tests.integration.conftest import daemons
from tests.integration.helpers import MIB, cgroups_unavailable, kill_started, meminfo_kb

pytestmark = [pytest.mark.soak, pytest.mark.root, pytest.mark.fuse]

MINUTES = float(os.environ.get("PROCFS_VIEW_SOAK_MINUTES", "10"))
CGROUPS = 32
READERS_PER_CGROUP = 2
RSS_BUDGET_KIB = 5 * 1024

#: Reads meminfo (and, every tenth round, stat and cpu/online) until the deadline;
#: prints {"reads": n, "wrong": [...first wrong answers...], "errors": [...]}.
READER = r"""
import json, sys, time
mnt, expected, deadline = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
reads, wrong, errors, rounds = 0, [], [], 0
while time.time() < deadline:
    rounds += 1
    try:
        with open(mnt + "/proc/meminfo", "rb") as handle:
            text = handle.read()
        reads += 1
        total = next(int(l.split()[1]) for l in text.splitlines() if l.startswith(b"MemTotal:"))
        if total != expected and len(wrong) < 10:
            wrong.append(total)
        if rounds % 10 == 0:
            for name in ("/proc/stat", "/sys/devices/system/cpu/online", "/proc/cpuinfo"):
                with open(mnt + name, "rb") as handle:
                    handle.read()
                reads += 1
    except Exception as error:
        if len(errors) < 10:
            errors.append(repr(error))
    time.sleep(0.005)
print(json.dumps({"reads": reads, "wrong": wrong, "errors": errors}))
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def soak_dir(tmp_path: Path) -> Path:
    reason = cgroups_unavailable()
    if reason is not None:
        pytest.skip(reason)
    return tmp_path


def limit_mib(index: int) -> int:
    return 64 + 8 * index


def test_soak(soak_dir: Path) -> None:
    duration = MINUTES * 60
    warm_up = min(60.0, duration / 5)
    with daemons(soak_dir) as start, contextlib.ExitStack() as stack:
        daemon = start()
        groups: list[tuple[TestCgroup, int]] = []
        for index in range(CGROUPS):
            cgroup = stack.enter_context(test_cgroup(memory_limit=limit_mib(index) * MIB))
            groups.append((cgroup, limit_mib(index) * 1024))
        started = time.time()
        deadline = started + duration
        readers: list[tuple[int, subprocess.Popen[str]]] = []
        for cgroup, expected in groups:
            for _ in range(READERS_PER_CGROUP):
                argv = [sys.executable, "-c", READER, str(daemon.mountpoint), str(expected)]
                process = cgroup.spawn([*argv, str(deadline)], stdout=subprocess.PIPE, text=True)
                readers.append((expected, process))
        churned = churn_wrong = 0
        rss_start: int | None = None
        previous: contextlib.ExitStack | None = None
        try:
            while time.time() < deadline:
                tick = time.time()
                if rss_start is None and tick - started >= warm_up:
                    rss_start = rss_kib(daemon.process.pid)
                # A new cgroup every second; the previous one is destroyed.
                current = contextlib.ExitStack()
                stack.callback(current.close)  # closed here on failure (idempotent)
                limit = 512 + churned % 100
                fresh = current.enter_context(test_cgroup(memory_limit=limit * MIB))
                text = fresh.run(["cat", str(daemon.path("proc/meminfo"))])
                churn_wrong += meminfo_kb(text, "MemTotal") != limit * 1024
                churned += 1
                if previous is not None:
                    previous.close()
                previous = current
                assert daemon.process.poll() is None, daemon.log()
                time.sleep(max(0.0, 1.0 - (time.time() - tick)))
            if previous is not None:
                previous.close()
            rss_end = rss_kib(daemon.process.pid)
            results = []
            for _, process in readers:
                out, _ = process.communicate(timeout=120)
                results.append(json.loads(out))
        finally:
            for _, process in readers:
                kill_started(process)
        log = daemon.log()
        assert daemon.stop() == 0
    reads = sum(r["reads"] for r in results)
    wrong = [w for r in results for w in r["wrong"]]
    errors = [e for r in results for e in r["errors"]]
    bad_log = [
        line
        for line in log.splitlines()
        if any(word in line for word in ("WARNING", "ERROR", "Traceback"))
    ]
    assert rss_start is not None
    figures = {
        "minutes": MINUTES,
        "readers": len(readers),
        "cgroups": CGROUPS,
        "reads": reads,
        "reads_per_second": round(reads / duration),
        "wrong_answers": len(wrong) + churn_wrong,
        "reader_errors": len(errors),
        "cgroups_created_and_destroyed": churned,
        "daemon_log_problems": len(bad_log),
        "rss_after_warm_up_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_kib": rss_end - rss_start,
    }
    print(json.dumps(figures, indent=1))
    results_file = os.environ.get("PROCFS_VIEW_SOAK_RESULTS")
    if results_file:
        write_results(Path(results_file), figures)
    assert not wrong, wrong
    assert not churn_wrong, churn_wrong
    assert not errors, errors
    assert not bad_log, bad_log[:20]
    assert rss_end - rss_start < RSS_BUDGET_KIB, figures


def write_results(path: Path, figures: dict[str, object]) -> None:
    rows = "\n".join(f"| {key} | {value} |" for key, value in figures.items())
    path.write_text(
        "# Soak run\n\n"
        f"`PROCFS_VIEW_SOAK_MINUTES={figures['minutes']:g} pytest -m soak tests/soak` on "
        f"{platform.node() and 'this machine'} ({os.cpu_count()} CPUs, kernel "
        f"{platform.release()}), {time.strftime('%Y-%m-%d')}.\n\n"
        "| figure | value |\n| --- | --- |\n"
        f"{rows}\n"
    )
