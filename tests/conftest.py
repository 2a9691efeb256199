"""Shared fixtures: real test cgroups (skipped with the reason where they cannot be made)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cgroups import can_make_cgroups

IN_CGROUP2_VM = os.environ.get("PROCFS_VIEW_CGROUP2_VM") == "1"


@pytest.fixture
def real_cgroups() -> None:
    """Skip unless this machine lets tests create cgroups (root, a memory controller)."""
    reason = can_make_cgroups()
    if reason is not None:
        pytest.skip(reason)


def _leftover_test_cgroups() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    patterns = ("procfs-view-test-*", "*/procfs-view-test-*")
    return [path for pattern in patterns for path in root.glob(pattern)]


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_cgroups() -> Iterator[None]:
    """Fail the run if a test leaves one of its cgroups behind."""
    before = set(_leftover_test_cgroups())
    yield
    left = set(_leftover_test_cgroups()) - before
    assert not left, f"tests left cgroups behind: {sorted(left)}"
