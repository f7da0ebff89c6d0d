"""Sizes as people write them (``512MiB``, ``4GiB``) and as they read them."""

from __future__ import annotations


def parse_size(text: str | int) -> int:
    """``"512MiB"``, ``"4GiB"``, ``"2G"``, ``"1000000"`` -> bytes; ValueError for anything else."""
    if isinstance(text, int):
        if text <= 0:
            raise ValueError("a size must be positive")
        return text
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
             "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    value = text.strip().lower().replace(" ", "")
    number = value.rstrip("kmgtib")
    unit = value[len(number):]
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"'{text}' is not a size (write e.g. 512MiB or 4GiB)") from None
    if unit not in units or amount <= 0:
        raise ValueError(f"'{text}' is not a size (write e.g. 512MiB or 4GiB)")
    return int(amount * units[unit])


def format_size(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"
