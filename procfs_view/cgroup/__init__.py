"""cgroup reading: where the hierarchies are, which cgroup a pid is in, and typed records of it.

Views never see a cgroup file name; they receive the records defined in ``records``.
"""

from procfs_view.cgroup.discovery import (
    DEFAULT_CGROUP_ROOT,
    CgroupLayout,
    CgroupMembership,
    Hierarchy,
    discover_layout,
    parse_mountinfo,
    parse_proc_cgroup,
    read_cgroup_text,
    read_membership,
    within_init,
)
from procfs_view.cgroup.reader import CgroupDir, CgroupReader

__all__ = [
    "DEFAULT_CGROUP_ROOT",
    "CgroupDir",
    "CgroupLayout",
    "CgroupMembership",
    "CgroupReader",
    "Hierarchy",
    "discover_layout",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "read_cgroup_text",
    "read_membership",
    "within_init",
]
