"""procfs-view: per-container /proc and /sys views served over FUSE (an LXCFS replacement)."""

__version__ = "0.1.0"
