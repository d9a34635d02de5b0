"""The vocabulary of the U-Net's skip grid, shared by search spaces, genotypes and networks.

Encoder/decoder levels, cell names ``skip_<enc>_<dec>`` and the gating/resampling choices are
used by :mod:`nas.search_space`, :mod:`nas.genotype` and :mod:`nas.backbone`. Keeping them in
this torch-free module with no imports of its own lets those modules share one definition
without importing each other (search_space and genotype used to form an import cycle).
"""

from __future__ import annotations

LEVELS = (1, 2, 3, 4)  # encoder levels that can feed a skip / decoder levels that receive one
N_WIDTHS = 5  # encoder levels 1..5 (level 5 is the bottleneck)
GATINGS = ("softmax", "sigmoid")
RESAMPLE_DOWN = ("maxpool", "bilinear")


def cell_name(enc: int, dec: int) -> str:
    """Key of the cell for skip ``enc → dec`` in ``cells`` and in genotype files."""
    return f"skip_{enc}_{dec}"


def parse_cell_name(name: str) -> tuple[int, int]:
    """``skip_<enc>_<dec>`` → ``(enc, dec)``, both in 1..4; ValueError otherwise."""
    parts = name.split("_")
    if len(parts) == 3 and parts[0] == "skip" and parts[1].isdigit() and parts[2].isdigit():
        enc, dec = int(parts[1]), int(parts[2])
        if enc in LEVELS and dec in LEVELS:
            return enc, dec
    raise ValueError(f"bad cell name {name!r}; expected skip_<enc>_<dec> with levels in 1..4")


__all__ = ["GATINGS", "LEVELS", "N_WIDTHS", "RESAMPLE_DOWN", "cell_name", "parse_cell_name"]
