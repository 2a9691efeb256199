"""Pure views: one module per served file, each ``render(...) -> bytes`` with no I/O."""
