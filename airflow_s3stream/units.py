"""Binary size units, defined once for the whole package: ``8 * MiB`` reads as what it is."""

from __future__ import annotations

__all__ = ["GiB", "KiB", "MiB", "TiB"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
