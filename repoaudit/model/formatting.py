"""Human-readable numbers for summaries printed by the CLI, the demo and reports."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """1536 -> '1.5 KiB' (binary units, as registries and du report them)."""
    if n is None or n != n:  # None or NaN
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
