"""Find the cgroup hierarchies (v1, v2, hybrid) and map a pid to its cgroup in each.

Hierarchies come from ``<proc>/self/mountinfo`` (see proc(5), "mountinfo"): every
``cgroup`` mount is a v1 hierarchy whose super options name its controllers (possibly
co-mounted, e.g. ``cpu,cpuacct``); a ``cgroup2`` mount is the unified hierarchy, whose
usable controllers are listed in its root ``cgroup.controllers``. A hybrid host has both.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from procfs_view import mountinfo
from procfs_view.errors import CgroupDataError, ProcessGone
from procfs_view.fileio import decode, read_bytes

log = logging.getLogger(__name__)

DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")

#: v1 super options that are mount flags, not controller names.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode", "favordynmods"}
)


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``mount_root`` is the path inside the cgroup filesystem that is mounted at
    ``mount_point`` (``/`` normally; a sub-path for a bind mount or a cgroup namespace).
    """

    version: int
    mount_point: Path
    controllers: frozenset[str]
    mount_root: str = "/"

    def directory(self, cgroup_path: str) -> Path:
        """Host directory of ``cgroup_path`` (as written in /proc/<pid>/cgroup)."""
        return _directory(self.mount_point, self.mount_root, cgroup_path)


@functools.lru_cache(maxsize=8192)
def _directory(mount_point: Path, mount_root: str, cgroup_path: str) -> Path:
    """``Hierarchy.directory``, memoized: the same few cgroups are resolved on every request
    (a pure function of its arguments; errors are raised afresh, never cached)."""
    relative = PurePosixPath(cgroup_path)
    root = PurePosixPath(mount_root)
    if root != PurePosixPath("/"):
        try:
            relative = relative.relative_to(root)
        except ValueError:
            # Outside what is mounted here: we cannot see it, never guess another dir.
            raise CgroupDataError(
                f"cgroup {cgroup_path} lies outside the mount of {mount_point}"
            ) from None
    parts = [p for p in relative.parts if p not in ("/", "")]
    if ".." in parts:
        raise CgroupDataError(f"cgroup {cgroup_path} lies outside our cgroup namespace")
    return mount_point.joinpath(*parts)


@dataclass(frozen=True)
class CgroupLayout:
    """All hierarchies of the host, and which one serves each controller."""

    v1: tuple[Hierarchy, ...] = ()
    unified: Hierarchy | None = None

    @property
    def kind(self) -> str:
        """``v1``, ``v2``, ``hybrid`` or ``none`` — for logs and ``show``."""
        if self.v1 and self.unified is not None:
            return "hybrid"
        if self.v1:
            return "v1"
        return "v2" if self.unified is not None else "none"

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        """The hierarchy that owns ``controller``; v1 wins on a hybrid host, as the kernel binds
        a controller to at most one hierarchy and v1 takes it first."""
        owners = self._owners
        if controller not in owners:
            owners[controller] = self._find_hierarchy(controller)
        return owners[controller]

    @functools.cached_property
    def _owners(self) -> dict[str, Hierarchy | None]:
        """``hierarchy_for``'s answers so far (the layout never changes)."""
        return {}

    def _find_hierarchy(self, controller: str) -> Hierarchy | None:
        for hierarchy in self.v1:
            if controller in hierarchy.controllers:
                return hierarchy
        if self.unified is not None and controller in self.unified.controllers:
            return self.unified
        return None


@dataclass(frozen=True)
class CgroupMembership:
    """A process's cgroup per v1 controller, and its unified (v2) cgroup if any."""

    pid: int
    v1: dict[str, str] = field(default_factory=dict)
    unified: str | None = None

    def path_in(self, hierarchy: Hierarchy) -> str | None:
        """The cgroup path of this process within ``hierarchy``."""
        if hierarchy.version == 2:
            return self.unified
        for controller in hierarchy.controllers:
            if controller in self.v1:
                return self.v1[controller]
        return None


def parse_mountinfo(text: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """Return ``(fstype, mount_root, mount_point, super_options)`` for each cgroup mount.

    Lines look like ``32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu``;
    optional fields sit between the mount options and the ``-`` separator.
    """
    return _cgroup_mounts(mountinfo.parse_mountinfo(text))


def _cgroup_mounts(
    entries: list[mountinfo.MountEntry],
) -> list[tuple[str, str, str, frozenset[str]]]:
    return [
        (entry.fstype, entry.root, entry.mount_point, entry.super_options)
        for entry in mountinfo.visible(entries)
        if entry.fstype in ("cgroup", "cgroup2")
    ]


def _rebase(mount_point: str, cgroup_root: Path) -> Path:
    """Point a mount under the default /sys/fs/cgroup at an injected root (fixture trees)."""
    path = Path(mount_point)
    if cgroup_root == DEFAULT_CGROUP_ROOT:
        return path
    try:
        return cgroup_root / path.relative_to(DEFAULT_CGROUP_ROOT)
    except ValueError:
        return path


def _read_controllers(directory: Path) -> frozenset[str]:
    try:
        return frozenset((directory / "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()


def _breadth(mount_root: str) -> tuple[int, int]:
    """Sort key: the mount of a hierarchy that sees most of it first. ``/`` sees the whole
    tree (of our cgroup namespace; ``/..`` even more of it); a runtime's bind of one
    container's cgroup (``/kubepods/.../ctr``) sees only that container."""
    parts = [part for part in mount_root.split("/") if part and part != "."]
    ups = sum(part == ".." for part in parts)
    return (-ups, len(parts) - ups)


def layout_from_mounts(
    mounts: list[tuple[str, str, str, frozenset[str]]], cgroup_root: Path = DEFAULT_CGROUP_ROOT
) -> CgroupLayout:
    """Build the layout from the reachable cgroup mounts: per hierarchy the mount that sees
    most of it (the first of those when several do), in the order hierarchies appear."""
    best: dict[frozenset[str] | None, tuple[str, str]] = {}  # None: the v2 hierarchy
    for fstype, mount_root, mount_point, options in mounts:
        key: frozenset[str] | None = None
        if fstype != "cgroup2":
            key = frozenset(
                option for option in options if option not in _V1_NON_CONTROLLER_OPTIONS
            )
            if not key:
                continue
        chosen = best.get(key)
        if chosen is None or _breadth(mount_root) < _breadth(chosen[0]):
            best[key] = (mount_root, mount_point)
    v1: list[Hierarchy] = []
    unified: Hierarchy | None = None
    for key, (mount_root, mount_point) in best.items():
        where = _rebase(mount_point, cgroup_root)
        if key is None:
            unified = Hierarchy(2, where, _read_controllers(where), mount_root)
        else:
            v1.append(Hierarchy(1, where, key, mount_root))
    return CgroupLayout(tuple(v1), unified)


def layout_from_directory(cgroup_root: Path) -> CgroupLayout:
    """Infer the layout from a directory tree alone (fixture trees without a mountinfo).

    A root holding ``cgroup.controllers`` is pure v2; otherwise each sub-directory is a v1
    hierarchy named by its controllers (``memory``, ``cpu,cpuacct``), and one holding
    ``cgroup.controllers`` (conventionally ``unified``) is the v2 part of a hybrid host.
    """
    if (cgroup_root / "cgroup.controllers").exists():
        return CgroupLayout((), Hierarchy(2, cgroup_root, _read_controllers(cgroup_root)))
    v1: list[Hierarchy] = []
    unified: Hierarchy | None = None
    try:
        entries = sorted(cgroup_root.iterdir())
    except OSError:
        return CgroupLayout()
    for entry in entries:
        if not entry.is_dir() or entry.is_symlink():
            continue
        if (entry / "cgroup.controllers").exists():
            unified = Hierarchy(2, entry, _read_controllers(entry))
        else:
            names = frozenset(entry.name.split(","))
            v1.append(Hierarchy(1, entry, names))
    return CgroupLayout(tuple(v1), unified)


def discover_layout(
    proc_root: Path = Path("/proc"), cgroup_root: Path = DEFAULT_CGROUP_ROOT
) -> CgroupLayout:
    """Discover the hierarchies visible to this daemon.

    Uses ``<proc_root>/self/mountinfo``; mount points under /sys/fs/cgroup are re-based onto
    ``cgroup_root`` so tests can point us at a fixture tree. Falls back to inspecting
    ``cgroup_root`` when the mountinfo names no cgroup mount.
    """
    try:
        entries = mountinfo.read_mountinfo(proc_root / "self" / "mountinfo")
    except OSError:
        entries = []
    layout = layout_from_mounts(_cgroup_mounts(entries), cgroup_root)
    if layout.kind == "none":
        layout = layout_from_directory(cgroup_root)
    log.debug("cgroup layout: %s %s", layout.kind, layout)
    return layout


def _prune_init_scope(path: str) -> str:
    """systemd puts a container's init in ``<container>/init.scope``; the container is the
    parent (LXCFS does the same pruning)."""
    if path.endswith("/init.scope"):
        pruned = path.removesuffix("/init.scope")
        return pruned or "/"
    return path


@functools.lru_cache(maxsize=4096)
def parse_proc_cgroup(pid: int, text: str) -> CgroupMembership:
    """Parse ``/proc/<pid>/cgroup``: ``id:controllers:path`` per line (v1), ``0::path`` (v2).

    Memoized (a pure function; a caller reads the same text on every request): callers
    must not modify the membership they get."""
    v1: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        hierarchy_id, controllers, path = parts
        path = _prune_init_scope(path)
        if hierarchy_id == "0" and controllers == "":
            unified = path
            continue
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return CgroupMembership(pid, v1, unified)


def cgroup_within(path: str, ancestor: str) -> bool:
    """Whether cgroup ``path`` (as /proc/<pid>/cgroup writes it) is ``ancestor`` or lies
    below it."""
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def _below(path: str, ancestor: str) -> bool:
    """Whether cgroup ``path`` lies strictly below ``ancestor`` (not the root)."""
    return ancestor != "/" and path != ancestor and cgroup_within(path, ancestor)


def within_init(caller: CgroupMembership, init: CgroupMembership) -> CgroupMembership:
    """The caller's cgroups as its container's: where the caller's cgroup lies below its
    pid namespace init's (a session, a service or ``docker exec -it`` under systemd in an
    LXD/Incus, nspawn or systemd-in-Docker container: ``<ct>/user.slice/session-3.scope``
    under an init in ``<ct>/init.scope``), the init's; else the caller's own.

    The container is then what the kernel limits: a session's sub-cgroup has no limit of its
    own, and its usage alone under the container's limit showed nearly all of it free. (The
    service keeps the caller's own when those limit it more tightly than the init's: a lower
    memory limit or CPU quota, or fewer CPUs; ``CgroupReader.limited_below``.) LXCFS always
    takes the init's; a caller outside the init's cgroup keeps its own, which is what
    Kubernetes pods sharing a pid namespace need (the pause container is their init, in a
    cgroup of its own)."""
    v1 = {
        controller: (init_path if _below(path, init_path := init.v1.get(controller, "/")) else path)
        for controller, path in caller.v1.items()
    }
    unified = caller.unified
    if unified is not None and init.unified is not None and _below(unified, init.unified):
        unified = init.unified
    if v1 == caller.v1 and unified == caller.unified:
        return caller
    return CgroupMembership(caller.pid, v1, unified)


def read_cgroup_text(
    pid: int, proc_root: Path = Path("/proc"), read_file: Callable[[str], bytes] = read_bytes
) -> str:
    """The text of ``/proc/<pid>/cgroup``: the caller's cgroup identity.

    Raises:
        ProcessGone: the pid does not exist (it exited before or during the read).
    """
    try:
        # cgroup names are bytes: keep odd ones intact rather than fail the caller.
        where = f"{proc_root}/{pid}/cgroup"
        return decode(read_file(where), where, errors="surrogateescape")
    except FileNotFoundError:
        raise ProcessGone(pid) from None
    except OSError as error:
        if error.errno in (errno.ESRCH, errno.ENOENT):
            raise ProcessGone(pid) from None
        raise


def read_membership(pid: int, proc_root: Path = Path("/proc")) -> CgroupMembership:
    """Read the cgroups of ``pid``.

    Raises:
        ProcessGone: the pid does not exist (it exited before or during the read).
    """
    return parse_proc_cgroup(pid, read_cgroup_text(pid, proc_root))
