"""/proc/cpuinfo restricted to the container's CPUs, renumbered from 0 (as LXCFS does).

Layouts handled (by the per-CPU block key): x86, ppc64le and aarch64 use blank-line separated
blocks starting ``processor : N`` (ppc64le adds a trailing machine block, older aarch64
kernels a leading one; both are kept); s390x lists ``processor N: ...`` lines in its
header, a ``# processors : N`` count, and per-CPU blocks keyed ``cpu number : N``.
"""

from __future__ import annotations

import re

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


def render(host_cpuinfo: str, cpus: VisibleCpus) -> bytes:
    """Keep the visible CPUs' blocks (in host order), numbered 0..N-1; other blocks stay."""
    renumber = {physical: index for index, physical in enumerate(cpus.physical)}
    out: list[list[str]] = []
    for block in _split_blocks(host_cpuinfo):
        found = _block_cpu(block)
        if found is None:
            out.append(_rewrite_s390_header(block, renumber))
            continue
        number, key, separator = found
        if number not in renumber:
            continue
        out.append([f"{key}{separator}{renumber[number]}", *block[1:]])
    if not out:
        return b""
    # Blocks are separated by a blank line; the end is the host's own (x86 ends with a blank
    # line, ppc64le's machine block and a bare s390x header do not).
    ending = "\n\n" if host_cpuinfo.endswith("\n\n") else "\n"
    return ("\n\n".join("\n".join(block) for block in out) + ending).encode()
