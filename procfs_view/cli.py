"""Command line: the daemon (LXCFS-compatible flags), ``show`` (debugging), ``check`` (liveness)
and ``webhook`` (Kubernetes injection)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from procfs_view import __version__

if TYPE_CHECKING:
    from procfs_view.options import ViewOptions

# Each subcommand imports what it needs when it runs: `check` is a liveness probe run
# every few seconds on every node, and the views, trio and pyfuse3 cost it 0.4 s of CPU.
DEFAULT_MOUNTPOINT = Path("/var/lib/lxcfs")


def _add_view_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l", "--enable-loadavg", action="store_true", help="per-container /proc/loadavg"
    )
    parser.add_argument(
        "-u", "--disable-swap", action="store_true", help="show no swap in meminfo and swaps"
    )
    parser.add_argument(
        "--enable-cfs",
        action="store_true",
        help="CPU view: show ceil(quota/period) CPUs in cpuinfo, stat and cpu/online",
    )


def _view_options(args: argparse.Namespace) -> ViewOptions:
    from procfs_view.options import ViewOptions

    return ViewOptions(
        swap=not args.disable_swap, cpu_view=args.enable_cfs, loadavg=args.enable_loadavg
    )


def _show_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="procfs-view show",
        description="Print what the container holding PID reads for each FILE.",
    )
    parser.add_argument("--pid", type=int, default=None, help="caller pid (default: this one)")
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"))
    parser.add_argument("--cgroup-root", type=Path, default=Path("/sys/fs/cgroup"))
    parser.add_argument("--sys-root", type=Path, default=Path("/sys"))
    _add_view_flags(parser)
    parser.add_argument("files", nargs="+", metavar="FILE", help="e.g. meminfo, cpu/online")
    return parser


def show(argv: Sequence[str]) -> int:
    """``procfs-view show``: the debugging tool operators use, and what tests drive."""
    from procfs_view.errors import ProcessGone, ProcfsViewError, ServeHost
    from procfs_view.registry import SERVED_FILES, resolve
    from procfs_view.service import Roots, ViewService

    args = _show_parser().parse_args(argv)
    served = []
    for name in args.files:
        found = resolve(name)
        if found is None:
            known = ", ".join(s.path for s in SERVED_FILES)
            print(f"procfs-view show: unknown file {name!r}; known: {known}", file=sys.stderr)
            return 2
        served.append(found)
    pid = args.pid if args.pid is not None else os.getpid()
    service = ViewService(
        Roots(args.proc_root, args.cgroup_root, args.sys_root), _view_options(args)
    )
    for entry in served:
        try:
            content = service.render(entry.path, pid)
        except ProcessGone as error:
            print(f"procfs-view show: {error}", file=sys.stderr)
            return 1
        except ServeHost:
            content = service.host_content(entry.path)
        except ProcfsViewError as error:
            print(
                f"procfs-view show: {entry.path}: {error}; the host file is served", file=sys.stderr
            )
            content = service.host_content(entry.path)
        try:
            sys.stdout.buffer.write(content)
            sys.stdout.flush()
        except BrokenPipeError:  # `show ... | head`
            return 0
    return 0


def remount(argv: Sequence[str]) -> int:
    """``procfs-view remount``: re-attach, now, every container's dead binds of our files.

    What the daemon does when it starts, for operators (e.g. after detaching a stuck
    mount by hand). One line per fixed bind on stdout ("fixed", or "stacked" when it was
    put on top of the dead one); failures on stderr, exit 1.
    """
    import logging

    from procfs_view.daemon import takes_over_from_lxcfs
    from procfs_view.logsetup import setup_logging
    from procfs_view.mountinfo import FSNAME
    from procfs_view.remount import FAILED, FIXED, STACKED, lineage_path, reattach

    parser = argparse.ArgumentParser(
        prog="procfs-view remount",
        description="Replace dead binds of MOUNTPOINT's files in every mount namespace.",
    )
    parser.add_argument("mountpoint", nargs="?", type=Path, default=DEFAULT_MOUNTPOINT)
    parser.add_argument(
        "-p",
        "--pidfile",
        type=Path,
        default=Path("/run/procfs-view.pid"),
        help="the daemon's pidfile; binds of the devices recorded next to it are adopted "
        "even when other instances run (default %(default)s)",
    )
    parser.add_argument(
        "--lxcfs",
        action="store_true",
        help="also replace dead LXCFS binds of the files we serve (the default at "
        f"{DEFAULT_MOUNTPOINT}, LXCFS's mountpoint)",
    )
    parser.add_argument("-d", "--debug", action="store_true", help="log every step")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    if not args.debug:  # stdout already says what was fixed
        logging.getLogger().setLevel(logging.WARNING)
    mountpoint = Path(os.path.realpath(args.mountpoint))
    lxcfs = args.lxcfs or takes_over_from_lxcfs(mountpoint, frozenset())
    try:
        outcomes = reattach(mountpoint, lineage_path(args.pidfile), lxcfs=lxcfs)
    except OSError as error:
        print(f"procfs-view remount: {error}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        if outcome.status in (FIXED, STACKED):
            print(f"{outcome.status} mnt:[{outcome.namespace}] pid {outcome.pid} {outcome.path}")
        elif outcome.status == FAILED:
            print(f"procfs-view remount: {outcome.describe()}", file=sys.stderr)
    # An LXCFS bind that does not answer is some other LXCFS's (stopped, or hung): said,
    # but not our failure.
    ours_failed = any(o.status == FAILED and o.source == FSNAME for o in outcomes)
    return 1 if ours_failed else 0


def check(argv: Sequence[str]) -> int:
    """``procfs-view check``: the liveness probe; 0 when the mount answers in time."""
    from procfs_view.health import DEFAULT_TIMEOUT, probe

    parser = argparse.ArgumentParser(
        prog="procfs-view check",
        description="Exit 0 when MOUNTPOINT/proc/meminfo answers within the timeout.",
    )
    parser.add_argument("mountpoint", nargs="?", type=Path, default=DEFAULT_MOUNTPOINT)
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default %(default)s)"
    )
    args = parser.parse_args(argv)
    problem = probe(args.mountpoint, args.timeout)
    if problem is not None:
        print(f"procfs-view check: {problem}", file=sys.stderr)
        return 1
    print(f"procfs-view check: {args.mountpoint} is serving")
    return 0


def prepare_mountpoint(argv: Sequence[str]) -> int:
    """``procfs-view prepare-mountpoint``: what the daemon does to its mountpoint at start
    (create it, detach a dead mount of ours), on its own. The DaemonSet's init container
    runs it: after an unclean death the node keeps a dead mount at /var/lib/lxcfs that
    nothing can stat, so the daemon's container could not even be started on it."""
    from procfs_view.daemon import AlreadyServed, StartupError, absolute_mountpoint
    from procfs_view.daemon import prepare_mountpoint as prepare
    from procfs_view.logsetup import setup_logging

    parser = argparse.ArgumentParser(
        prog="procfs-view prepare-mountpoint",
        description="Create MOUNTPOINT or detach a dead procfs-view/LXCFS mount there.",
    )
    parser.add_argument("mountpoint", nargs="?", type=Path, default=DEFAULT_MOUNTPOINT)
    args = parser.parse_args(argv)
    setup_logging(debug=False)
    try:
        prepare(absolute_mountpoint(args.mountpoint))
    except AlreadyServed as exc:  # nothing to prepare; the daemon will say the same
        print(f"procfs-view prepare-mountpoint: {exc}")
        return 0
    except StartupError as exc:
        print(f"procfs-view prepare-mountpoint: {exc}", file=sys.stderr)
        return 1
    print(f"procfs-view prepare-mountpoint: {args.mountpoint} is ready")
    return 0


def webhook(argv: Sequence[str]) -> int:
    """``procfs-view webhook``: the Kubernetes mutating admission webhook (HTTPS only)."""
    from procfs_view.logsetup import setup_logging
    from procfs_view.webhook import DEFAULT_MOUNT_DIR
    from procfs_view.webhook_server import WebhookConfig, run

    parser = argparse.ArgumentParser(
        prog="procfs-view webhook",
        description=(
            "Mutating admission webhook (AdmissionReview v1 over HTTPS) that mounts the "
            "served files into pods; see packaging/kubernetes/webhook.yaml."
        ),
    )
    parser.add_argument("--listen", default="0.0.0.0:8443", metavar="HOST:PORT")
    parser.add_argument("--tls-cert", type=Path, required=True, help="PEM certificate chain")
    parser.add_argument("--tls-key", type=Path, required=True, help="PEM private key")
    parser.add_argument(
        "--mount-dir",
        default=DEFAULT_MOUNT_DIR,
        help="the daemon's mountpoint on the nodes (default %(default)s)",
    )
    parser.add_argument("-d", "--debug", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    return run(WebhookConfig(args.listen, args.tls_cert, args.tls_key, args.mount_dir))


def _bounded(text: str, unit: str, highest: float) -> float:
    """A number from 0 to ``highest`` ``unit`` given on the command line."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
    if not math.isfinite(value) or value < 0 or value > highest:
        raise argparse.ArgumentTypeError(f"must be between 0 and {highest:g} {unit}, got {text!r}")
    return value


def _cache_ttl(text: str) -> float:
    return _bounded(text, "seconds", 60)


def _busy_poll_us(text: str) -> float:
    """Microseconds on the command line, seconds inside."""
    return _bounded(text, "microseconds", 10_000) / 1e6


def _open_files(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of files: {text!r}") from None
    if not 0 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"must be between 0 and {1 << 20}, got {text!r}")
    return value


def _metrics_address(text: str) -> str:
    from procfs_view.metrics import parse_address

    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _daemon_parser() -> argparse.ArgumentParser:
    from procfs_view.cache import DEFAULT_TTL
    from procfs_view.fileio import DEFAULT_OPEN_FILES
    from procfs_view.options import DEFAULT_BUSY_POLL

    parser = argparse.ArgumentParser(
        prog="procfs-view",
        description=(
            "Serve per-container /proc and /sys files over FUSE (LXCFS-compatible). "
            "Subcommands: 'procfs-view show [--pid PID] FILE...', "
            "'procfs-view check [MOUNTPOINT]', 'procfs-view webhook --tls-cert F --tls-key F'."
        ),
    )
    parser.add_argument("mountpoint", nargs="?", type=Path, default=DEFAULT_MOUNTPOINT)
    _add_view_flags(parser)
    parser.add_argument("-p", "--pidfile", type=Path, default=None)
    parser.add_argument("--runtime-dir", type=Path, default=Path("/run"))
    parser.add_argument(
        "-o", dest="fuse_options", action="append", default=[], help="extra FUSE mount options"
    )
    parser.add_argument(
        "--cache-ttl",
        type=_cache_ttl,
        default=DEFAULT_TTL,
        metavar="SECONDS",
        help=f"reuse a file rendered for the same cgroups, and host inputs, for at most "
        f"SECONDS (default {DEFAULT_TTL:g}; 0 computes every read afresh)",
    )
    parser.add_argument(
        "--busy-poll",
        type=_busy_poll_us,
        default=DEFAULT_BUSY_POLL,
        metavar="USEC",
        help=f"after answering a request, poll up to USEC microseconds for the next one "
        f"before sleeping (default {DEFAULT_BUSY_POLL * 1e6:g}; 0 never polls): saves a "
        f"wake-up per request while a reader is mid-read; nothing polls when idle",
    )
    parser.add_argument(
        "--open-files",
        type=_open_files,
        default=DEFAULT_OPEN_FILES,
        metavar="N",
        help=f"keep up to N cgroup and /proc files open, re-read with one pread (default "
        f"{DEFAULT_OPEN_FILES}; about 4.3 KiB of kernel memory each; 0 opens every file "
        f"afresh)",
    )
    parser.add_argument(
        "--metrics-address",
        type=_metrics_address,
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    parser.add_argument(
        "--fd-store",
        action="store_true",
        help="under systemd, keep the FUSE connection in the unit's file descriptor store "
        "(FileDescriptorStoreMax=1): after a crash or restart the next daemon serves the same "
        "mount, and files kept open go on working; a stop still ends it (default: on when "
        "systemd sets $FDSTORE)",
    )
    parser.add_argument("-d", "--debug", action="store_true", help="debug logging")
    parser.add_argument(
        "-f",
        "--foreground",
        action="store_true",
        help="accepted for LXCFS compatibility; "
        "procfs-view always stays in the foreground (let systemd or the container runtime "
        "supervise it)",
    )
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--cgroup-root", type=Path, default=Path("/sys/fs/cgroup"), help=argparse.SUPPRESS
    )
    parser.add_argument("--sys-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"procfs-view {__version__}")
    return parser


def run_daemon(argv: Sequence[str]) -> int:
    from procfs_view import daemon
    from procfs_view.logsetup import setup_logging
    from procfs_view.service import Roots

    args = _daemon_parser().parse_args(argv)
    setup_logging(args.debug)
    fuse_options = tuple(
        option for group in args.fuse_options for option in group.split(",") if option
    )
    config = daemon.DaemonConfig(
        mountpoint=args.mountpoint,
        options=_view_options(args),
        pidfile=args.pidfile or args.runtime_dir / "procfs-view.pid",
        runtime_dir=args.runtime_dir,
        fuse_options=fuse_options,
        debug=args.debug,
        roots=Roots(args.proc_root, args.cgroup_root, args.sys_root),
        cache_ttl=args.cache_ttl,
        busy_poll=args.busy_poll,
        open_files=args.open_files,
        metrics_address=args.metrics_address,
        fd_store=args.fd_store,
    )
    return daemon.run(config)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["show"]:
        return show(arguments[1:])
    if arguments[:1] == ["remount"]:
        return remount(arguments[1:])
    if arguments[:1] == ["check"]:
        return check(arguments[1:])
    if arguments[:1] == ["webhook"]:
        return webhook(arguments[1:])
    if arguments[:1] == ["prepare-mountpoint"]:
        return prepare_mountpoint(arguments[1:])
    return run_daemon(arguments)
