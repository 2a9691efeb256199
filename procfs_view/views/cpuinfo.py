"""/proc/cpuinfo restricted to the container's CPUs, renumbered from 0 (as LXCFS does).

Layouts handled (by the per-CPU block key): x86, ppc64le and aarch64 use blank-line separated
blocks starting ``processor : N`` (ppc64le adds a trailing machine block, older aarch64
kernels a leading one; both are kept); s390x lists ``processor N: ...`` lines in its
header, a ``# processors : N`` count, and per-CPU blocks keyed ``cpu number : N``.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from procfs_view.views.cpus import VisibleCpus

_BLOCK_KEY = re.compile(r"^(processor|cpu number)(\s*:\s*)(\d+)\s*$")
_S390_PROCESSOR_LINE = re.compile(r"^processor (\d+):")
_S390_COUNT_LINE = re.compile(r"^(# processors\s*:\s*)\d+\s*$")


def _block_cpu(block: list[str]) -> tuple[int, str, str] | None:
    """(cpu number, key, separator) if ``block`` is a per-CPU block."""
    for line in block[:1]:
        match = _BLOCK_KEY.match(line)
        if match:
            return int(match.group(3)), match.group(1), match.group(2)
    return None


def _split_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _rewrite_s390_header(block: list[str], renumber: dict[int, int]) -> list[str]:
    rewritten: list[str] = []
    for line in block:
        processor = _S390_PROCESSOR_LINE.match(line)
        count = _S390_COUNT_LINE.match(line)
        if processor:
            number = int(processor.group(1))
            if number not in renumber:
                continue
            line = f"processor {renumber[number]}:{line[processor.end() :]}"
        elif count:
            line = f"{count.group(1)}{len(renumber)}"
        rewritten.append(line)
    return rewritten


class _Block(NamedTuple):
    """One blank-line separated block: for a per-CPU block its CPU number, key and
    separator (None otherwise), its lines, and the text after its first line."""

    cpu: int | None
    key: str
    separator: str
    lines: tuple[str, ...]
    rest: str


@functools.lru_cache(maxsize=2)
def _blocks(host_cpuinfo: str) -> tuple[_Block, ...]:
    """The host file split into blocks, memoized on its text: the service shares one host
    cpuinfo for at least 1 s, and splitting it was most of a render on a big host (1 ms
    per read for 128 CPUs, whatever the container's share of them)."""
    blocks = []
    for lines in _split_blocks(host_cpuinfo):
        found = _block_cpu(lines)
        cpu, key, separator = (None, "", "") if found is None else found
        blocks.append(_Block(cpu, key, separator, tuple(lines), "\n".join(lines[1:])))
    return tuple(blocks)


def render(host_cpuinfo: str, cpus: VisibleCpus) -> bytes:
    """Keep the visible CPUs' blocks (in host order), numbered 0..N-1; other blocks stay."""
    renumber = {physical: index for index, physical in enumerate(cpus.physical)}
    out: list[str] = []
    for block in _blocks(host_cpuinfo):
        if block.cpu is None:
            out.append("\n".join(_rewrite_s390_header(list(block.lines), renumber)))
            continue
        shown = renumber.get(block.cpu)
        if shown is None:
            continue
        first = f"{block.key}{block.separator}{shown}"
        out.append(f"{first}\n{block.rest}" if len(block.lines) > 1 else first)
    if not out:
        return b""
    # Blocks are separated by a blank line; the end is the host's own (x86 ends with a blank
    # line, ppc64le's machine block and a bare s390x header do not).
    ending = "\n\n" if host_cpuinfo.endswith("\n\n") else "\n"
    return ("\n\n".join(out) + ending).encode()
