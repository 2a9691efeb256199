"""Fixture hosts: a fake /proc, /sys and cgroup tree (v1, v2 or hybrid) in a temporary dir.

They cover what this machine cannot produce (pure v2 and hybrid-with-controllers layouts,
garbage and missing files, other architectures) and let views be checked digit by digit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from procfs_view.options import ViewOptions
from procfs_view.service import Roots, ViewService

DATA = Path(__file__).parent / "data"
HOST_NS = "host-ns"
V1_HIERARCHIES = ("cpu,cpuacct", "cpuset", "memory", "blkio", "pids")
V1_UNLIMITED = 9223372036854771712


@dataclass
class FixtureHost:
    """A fake host. ``kind`` is ``v1``, ``v2`` or ``hybrid`` (v1 controllers and an
    empty cgroup2 at /sys/fs/cgroup/unified, like this CI machine)."""

    base: Path
    kind: str
    cpuinfo: str = "cpuinfo.x86_64"
    online: str = "0-3"
    _namespaces: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.proc = self.base / "proc"
        self.cgroup = self.base / "cgroup"
        self.sys = self.base / "sys"
        for directory in (self.proc, self.cgroup, self.sys):
            directory.mkdir(parents=True, exist_ok=True)
        self._write_mountinfo()
        for name in ("meminfo.x86_64", "stat.x86_64", "diskstats.x86_64"):
            (self.proc / name.split(".")[0]).write_text((DATA / name).read_text())
        (self.proc / "cpuinfo").write_text((DATA / self.cpuinfo).read_text())
        (self.proc / "uptime").write_text("1000.00 3500.00\n")
        (self.proc / "loadavg").write_text("0.50 0.40 0.30 2/300 4242\n")
        (self.proc / "swaps").write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        online = self.sys / "devices/system/cpu/online"
        online.parent.mkdir(parents=True, exist_ok=True)
        online.write_text(self.online + "\n")
        self._make_roots()
        self.add_process("self", "/", namespace=HOST_NS)
        self.add_process(1, "/", namespace=HOST_NS)

    # -- layout -------------------------------------------------------------------------

    def _write_mountinfo(self) -> None:
        lines = []
        if self.kind in ("v1", "hybrid"):
            for index, name in enumerate(V1_HIERARCHIES):
                lines.append(
                    f"{30 + index} 25 0:{30 + index} / /sys/fs/cgroup/{name} rw,relatime "
                    f"shared:{10 + index} - cgroup cgroup rw,{name}"
                )
        if self.kind == "hybrid":
            lines.append("40 25 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw")
        if self.kind == "v2":
            lines.append("29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate")
        lines.insert(0, "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw")
        (self.proc / "self").mkdir(exist_ok=True)
        (self.proc / "self" / "mountinfo").write_text("\n".join(lines) + "\n")

    def hierarchy_dir(self, controller: str) -> Path:
        """Mount point (in the fixture) of the hierarchy owning ``controller``."""
        if self.kind == "v2":
            return self.cgroup
        for name in V1_HIERARCHIES:
            if controller in name.split(","):
                return self.cgroup / name
        if controller == "unified" and self.kind == "hybrid":
            return self.cgroup / "unified"
        raise KeyError(controller)

    def _make_roots(self) -> None:
        if self.kind == "v2":
            (self.cgroup / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
            (self.cgroup / "cpu.stat").write_text("usage_usec 0\n")
            (self.cgroup / "cpuset.cpus.effective").write_text(self.online + "\n")
            (self.cgroup / "memory.stat").write_text("anon 0\n")
            return
        for name in V1_HIERARCHIES:
            (self.cgroup / name).mkdir(exist_ok=True)
        memory = self.cgroup / "memory"
        (memory / "memory.limit_in_bytes").write_text(f"{V1_UNLIMITED}\n")
        (memory / "memory.memsw.limit_in_bytes").write_text(f"{V1_UNLIMITED}\n")
        (memory / "memory.usage_in_bytes").write_text("1000000000\n")
        cpuset = self.cgroup / "cpuset"
        (cpuset / "cpuset.cpus").write_text(self.online + "\n")
        (cpuset / "cpuset.effective_cpus").write_text(self.online + "\n")
        cpu = self.cgroup / "cpu,cpuacct"
        (cpu / "cpu.cfs_quota_us").write_text("-1\n")
        (cpu / "cpu.cfs_period_us").write_text("100000\n")
        if self.kind == "hybrid":
            (self.cgroup / "unified").mkdir(exist_ok=True)
            (self.cgroup / "unified" / "cgroup.controllers").write_text("")

    def cgroup_dir(self, controller: str, path: str) -> Path:
        directory = self.hierarchy_dir(controller) / path.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    # -- processes ----------------------------------------------------------------------

    def add_process(
        self,
        pid: int | str,
        cgroup: str,
        namespace: str = HOST_NS,
        nspid: Iterable[int] | None = None,
        start_ticks: int = 5000,
    ) -> None:
        """A process in ``cgroup`` (same path in every hierarchy) and pid ``namespace``
        (processes given the same name share one ns/pid inode, via a hard link)."""
        directory = self.proc / str(pid)
        directory.mkdir(exist_ok=True)
        lines = []
        if self.kind in ("v1", "hybrid"):
            for index, name in enumerate(reversed(V1_HIERARCHIES)):
                lines.append(f"{index + 1}:{name}:{cgroup}")
        lines.append(f"0::{cgroup if self.kind == 'v2' else '/'}")
        (directory / "cgroup").write_text("\n".join(lines) + "\n")
        numeric = 1 if pid == "self" else int(pid)
        stat_fields = ["S", *["0"] * 18, str(start_ticks), *["0"] * 30]
        (directory / "stat").write_text(f"{numeric} (some (odd) name) {' '.join(stat_fields)}\n")
        chain = tuple(nspid) if nspid is not None else (numeric,)
        (directory / "status").write_text(
            f"Name:\tx\nPid:\t{numeric}\nNSpid:\t{' '.join(map(str, chain))}\n"
        )
        (directory / "ns").mkdir(exist_ok=True)
        link = directory / "ns" / "pid"
        if link.exists():
            link.unlink()
        if namespace not in self._namespaces:
            canonical = self.base / "namespaces" / namespace
            canonical.parent.mkdir(exist_ok=True)
            canonical.write_text(namespace)
            self._namespaces[namespace] = canonical
        os.link(self._namespaces[namespace], link)
        if cgroup != "/":
            for controller in ("memory", "cpuset", "cpu", "blkio"):
                self.cgroup_dir(controller, cgroup)

    # -- cgroup content -----------------------------------------------------------------

    def write(self, controller: str, path: str, files: Mapping[str, str | int]) -> None:
        directory = self.cgroup_dir(controller, path)
        for name, content in files.items():
            (directory / name).write_text(f"{content}\n")

    def set_memory(
        self,
        path: str,
        limit: int | None,
        usage: int,
        stat: Mapping[str, int] | None = None,
        swap_limit: int | None = None,
        swap_usage: int | None = None,
        swappiness: int = 60,
    ) -> None:
        """Memory files of the running kernel's kind; ``stat`` uses v2 key names and is
        translated to v1 ``total_*`` names on v1."""
        stat = dict(stat or {})
        if self.kind == "v2":
            files: dict[str, str | int] = {
                "memory.max": "max" if limit is None else limit,
                "memory.current": usage,
                "memory.stat": "\n".join(f"{k} {v}" for k, v in stat.items()),
            }
            if swap_usage is not None:
                files["memory.swap.current"] = swap_usage
                files["memory.swap.max"] = "max" if swap_limit is None else swap_limit
        else:
            v1_names = {
                "anon": "rss",
                "file": "cache",
                "file_mapped": "mapped_file",
                "anon_thp": "rss_huge",
                "file_dirty": "dirty",
                "file_writeback": "writeback",
            }
            v1_stat = {v1_names.get(k, k): v for k, v in stat.items()}
            lines = [f"{k} {v}" for k, v in v1_stat.items()]
            lines += [f"total_{k} {v}" for k, v in v1_stat.items()]
            files = {
                "memory.limit_in_bytes": V1_UNLIMITED if limit is None else limit,
                "memory.usage_in_bytes": usage,
                "memory.stat": "\n".join(lines),
                "memory.swappiness": swappiness,
            }
            if swap_usage is not None:
                memsw_limit = (
                    V1_UNLIMITED if swap_limit is None or limit is None else limit + swap_limit
                )
                files["memory.memsw.limit_in_bytes"] = memsw_limit
                files["memory.memsw.usage_in_bytes"] = usage + swap_usage
        self.write("memory", path, files)

    def set_cpu(
        self,
        path: str,
        cpus: str | None = None,
        quota: tuple[int, int] | None = None,
        per_cpu_ns: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        """cpuset, CFS bandwidth and usage; ``per_cpu_ns`` maps CPU -> (user, system) ns
        (v2 gets the totals in cpu.stat)."""
        if cpus is not None:
            self.write("cpuset", path, {"cpuset.cpus": cpus})
        if quota is not None:
            if self.kind == "v2":
                self.write("cpu", path, {"cpu.max": f"{quota[0]} {quota[1]}"})
            else:
                self.write(
                    "cpu", path, {"cpu.cfs_quota_us": quota[0], "cpu.cfs_period_us": quota[1]}
                )
        elif self.kind != "v2":
            self.write("cpu", path, {"cpu.cfs_quota_us": -1, "cpu.cfs_period_us": 100000})
        usage = dict(per_cpu_ns or {})
        if self.kind == "v2":
            user = sum(u for u, _ in usage.values()) // 1000
            system = sum(s for _, s in usage.values()) // 1000
            self.write(
                "cpu",
                path,
                {"cpu.stat": f"usage_usec {user + system}\nuser_usec {user}\nsystem_usec {system}"},
            )
        else:
            rows = ["cpu user system"] + [
                f"{cpu} {usage.get(cpu, (0, 0))[0]} {usage.get(cpu, (0, 0))[1]}" for cpu in range(4)
            ]
            self.write("cpuacct", path, {"cpuacct.usage_all": "\n".join(rows)})

    def roots(self) -> Roots:
        return Roots(self.proc, self.cgroup, self.sys)

    def service(self, options: ViewOptions | None = None) -> ViewService:
        return ViewService(self.roots(), options or ViewOptions())
