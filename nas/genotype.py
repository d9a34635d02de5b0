"""The genotype: what a search keeps, as plain records and a versioned, diff-able YAML file.

A genotype is the hand-off between ``nas discretize`` and ``nas retrain``: it names the search
space and copies its backbone (so a file can be retrained without the run folder), and lists per
skip cell ``skip_<enc>_<dec>`` the kept edges ``{to, from, op, weight}`` and the nodes of the sum
block (SSB) and concat block (CSB) with their weights. The layout is fixed in
``docs/internals.md``::

    format: skipnas-genotype/1
    search_space: unet_fullscale
    backbone: {in_channels: 3, widths: [8, 16, 32, 64, 128], nodes: 3, node_width: 16,
               resample_down: maxpool, head_channels: 2}
    source: {run: runs/x, epoch: 30, policy: thesis, k: 3}
    cells:
      skip_1_1:
        edges:
        - {to: 1, from: 0, op: sep_conv_3x3, weight: 0.412}
        ssb: {gating: softmax, nodes: [1, 3], weights: [0.6, 0.4]}
        csb: {gating: sigmoid, nodes: [2, 3], weights: [0.55, 0.52]}
        note: [...]          # optional, e.g. why a fallback was used
      skip_2_1: absent       # a skip of the space that the network does not have

Every skip of the search space must be listed (when the space can be loaded), either in full or
as ``absent``: a file cut short, or ``cells: {}``, would otherwise build a network with fewer
skips without a word.

Weights are rounded to 6 decimals when a record is created, so a file is stable under
save → load → save (byte-identical text) and a diff of two genotypes shows real changes only.
Everything is validated on load; errors are one line naming the file, the cell and the field,
because a genotype is often written or edited by hand.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from nas.errors import UserError
from nas.runs import write_yaml, yaml_text
from nas.skip_grid import GATINGS, N_WIDTHS, RESAMPLE_DOWN, cell_name, parse_cell_name
from nas.textfiles import read_yaml

FORMAT = "skipnas-genotype/1"
WEIGHT_DECIMALS = 6
ABSENT = "absent"  # a cell written as `skip_<e>_<d>: absent`: that skip is not in the network


def round_weight(value: float) -> float:
    """Weights are stored with 6 decimals: enough to rank, short enough to diff."""
    return round(float(value), WEIGHT_DECIMALS)


# ----------------------------------------------------------------------------- records
@dataclass
class Edge:
    """A kept (input, op) pair of a node: ``op(n_from)`` feeds node ``to`` with ``weight``."""

    to: int
    from_: int
    op: str
    weight: float

    def __post_init__(self) -> None:
        self.weight = round_weight(self.weight)

    def to_dict(self) -> dict[str, Any]:
        return {"to": self.to, "from": self.from_, "op": self.op, "weight": self.weight}


@dataclass
class Block:
    """An output block (SSB or CSB): the intermediate nodes it reads and their weights.

    ``gating`` records how the search normalised the block (softmax or sigmoid); for the SSB
    the kept weights are renormalised to sum 1, for the CSB they are the gate values.
    """

    gating: str
    nodes: list[int]
    weights: list[float]

    def __post_init__(self) -> None:
        self.nodes = [int(n) for n in self.nodes]
        self.weights = [round_weight(w) for w in self.weights]

    def to_dict(self) -> dict[str, Any]:
        return {"gating": self.gating, "nodes": list(self.nodes), "weights": list(self.weights)}


@dataclass
class CellGenotype:
    """One discretized skip cell; ``notes`` explain anything unusual (written as ``note:``)."""

    edges: list[Edge]
    ssb: Block
    csb: Block
    notes: list[str] = field(default_factory=list)

    @classmethod
    def absent(cls) -> CellGenotype:
        """A skip of the search space that the network does not have (``skip_<e>_<d>: absent``)."""
        return cls(edges=[], ssb=Block(GATINGS[0], [], []), csb=Block(GATINGS[1], [], []))

    @property
    def is_absent(self) -> bool:
        """Nothing kept and nothing to say: written as ``absent``; the network leaves it out."""
        return not self.edges and not self.ssb.nodes and not self.csb.nodes and not self.notes

    def node_edges(self, node: int) -> list[Edge]:
        """Edges entering ``node``."""
        return [e for e in self.edges if e.to == node]

    def live(self) -> tuple[list[Edge], list[int], list[int]]:
        """Edges and SSB/CSB nodes that contribute to the output (see :func:`prune_cell`)."""
        return prune_cell(self.edges, self.ssb.nodes, self.csb.nodes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "edges": [e.to_dict() for e in self.edges],
            "ssb": self.ssb.to_dict(),
            "csb": self.csb.to_dict(),
        }
        if self.notes:
            out["note"] = list(self.notes)
        return out


def prune_edges(edges: list[Edge], outputs: set[int]) -> tuple[list[Edge], set[int]]:
    """Drop nodes that get no input or feed no node in ``outputs``, with their edges, until stable.

    Shared by the discretizer (what to keep) and the discrete network (what to build), so a
    hand-edited genotype with a dead node never creates parameters that get no gradient.
    Returns the surviving edges (in their order) and the set of live intermediate nodes.
    """
    while True:
        valued = {0}
        for e in sorted(edges, key=lambda e: e.to):  # edges point forward: one pass suffices
            if e.from_ in valued:
                valued.add(e.to)
        useful = set(outputs)
        for e in sorted(edges, key=lambda e: -e.to):
            if e.to in useful:
                useful.add(e.from_)
        live = (valued & useful) - {0}
        kept = [e for e in edges if e.to in live and (e.from_ == 0 or e.from_ in live)]
        if len(kept) == len(edges):
            return kept, live
        edges = kept


def prune_cell(edges: list[Edge], ssb_nodes: list[int],
               csb_nodes: list[int]) -> tuple[list[Edge], list[int], list[int]]:
    """:func:`prune_edges` with the SSB and CSB nodes as outputs: the surviving edges and the
    block nodes that are still live (each list in its order)."""
    edges, live = prune_edges(edges, set(ssb_nodes) | set(csb_nodes))
    return edges, [n for n in ssb_nodes if n in live], [n for n in csb_nodes if n in live]


@dataclass
class Backbone:
    """The static U-Net around the cells, copied from the search space."""

    in_channels: int
    widths: list[int]
    nodes: int
    node_width: int
    resample_down: str = "maxpool"
    head_channels: int = 2

    @classmethod
    def from_space(cls, space: Any) -> Backbone:
        """The backbone of a :class:`nas.search_space.SearchSpace`."""
        return cls(
            in_channels=space.in_channels,
            widths=list(space.widths),
            nodes=space.nodes,
            node_width=space.node_width,
            resample_down=space.resample_down,
            head_channels=space.head_channels,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "widths": list(self.widths),
            "nodes": self.nodes,
            "node_width": self.node_width,
            "resample_down": self.resample_down,
            "head_channels": self.head_channels,
        }


@dataclass
class Genotype:
    """A whole discretized architecture: search space name, backbone, provenance, cells."""

    search_space: str
    backbone: Backbone
    source: dict[str, Any]
    cells: dict[str, CellGenotype]

    def to_dict(self) -> dict[str, Any]:
        """The file layout of ``docs/internals.md`` as plain YAML-able data."""
        return {
            "format": FORMAT,
            "search_space": self.search_space,
            "backbone": self.backbone.to_dict(),
            "source": dict(self.source),
            "cells": {name: ABSENT if cell.is_absent else cell.to_dict() for name, cell in self.cells.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> Genotype:
        """Parse and validate ``data`` (a loaded YAML document); errors start with ``source``."""
        return _parse_genotype(data, source)

    def validate(self, where: str = "genotype") -> None:
        """Run the load-time checks on an in-memory genotype (e.g. one built in code)."""
        _parse_genotype(self.to_dict(), where)


# ----------------------------------------------------------------------------- files
def save_genotype(genotype: Genotype, path: str | os.PathLike) -> Path:
    """Write ``genotype`` as YAML (atomically: a reader never sees a half-written file)."""
    return write_yaml(path, genotype.to_dict())


def genotype_text(genotype: Genotype) -> str:
    """The exact text :func:`save_genotype` writes (to compare with a file on disk)."""
    return yaml_text(genotype.to_dict())


def load_genotype(path: str | os.PathLike) -> Genotype:
    """Read and fully validate a genotype file; every problem is a one-line :class:`UserError`."""
    path = Path(path)
    return Genotype.from_dict(read_yaml(path, "genotype file"), str(path))


# ----------------------------------------------------------------------------- validation
class _Where:
    """Builds ``<file>: <dotted.field>: <message>`` errors while walking the document."""

    def __init__(self, source: str, key: str = "") -> None:
        self.source, self.key = source, key

    def child(self, key: str | int) -> _Where:
        if isinstance(key, int):
            return _Where(self.source, f"{self.key}[{key}]")
        return _Where(self.source, f"{self.key}.{key}" if self.key else key)

    def error(self, message: str) -> UserError:
        return UserError(f"{self.source}: {self.key}: {message}" if self.key else f"{self.source}: {message}")


def _mapping(value: Any, at: _Where, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping:
    if not isinstance(value, Mapping):
        raise at.error(f"expected a mapping with keys {', '.join(required)}, got {_show(value)}")
    for key in value:
        if key not in required + optional:
            raise at.child(str(key)).error(f"unknown key; expected {', '.join(required + optional)}")
    for key in required:
        if key not in value:
            raise at.child(key).error("missing")
    return value


def _int(value: Any, at: _Where, low: int, high: Optional[int] = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise at.error(f"expected an integer {bound}, got {_show(value)}")
    return value


def _weight(value: Any, at: _Where) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise at.error(f"expected a number in [0, 1], got {_show(value)}")
    if not 0.0 <= value <= 1.0:
        raise at.error(f"expected a number in [0, 1] (a softmax/sigmoid weight), got {value!r}")
    return float(value)


def _choice(value: Any, at: _Where, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise at.error(f"expected one of {', '.join(allowed)}, got {_show(value)}")
    return value


def _list(value: Any, at: _Where, what: str) -> list:
    if not isinstance(value, list):
        raise at.error(f"expected a list of {what}, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_genotype(data: Any, source: str) -> Genotype:
    top = _Where(source)
    if not isinstance(data, Mapping):
        raise top.error(f"expected a genotype mapping (format: {FORMAT}), got {_show(data)}")
    if "format" not in data:
        raise top.child("format").error(f"missing; expected '{FORMAT}' (is this a genotype file?)")
    if data["format"] != FORMAT:
        raise top.child("format").error(f"unsupported version {_show(data['format'])}; this skipnas reads '{FORMAT}'")
    _mapping(data, top, ("format", "search_space", "backbone", "cells"), ("source",))
    space_name = data["search_space"]
    if not isinstance(space_name, str) or not space_name:
        raise top.child("search_space").error(f"expected a search-space name, got {_show(space_name)}")
    backbone = _parse_backbone(data["backbone"], top.child("backbone"))
    src = data.get("source") or {}
    if not isinstance(src, Mapping):
        raise top.child("source").error(f"expected a mapping (run, epoch, policy, ...), got {_show(src)}")
    space = _try_load_space(space_name)
    if space is not None:
        _check_backbone_matches(backbone, space, top.child("backbone"))
    cells_raw = data["cells"]
    if cells_raw is None:
        cells_raw = {}
    if not isinstance(cells_raw, Mapping):
        raise top.child("cells").error(f"expected a mapping of skip_<enc>_<dec> cells, got {_show(cells_raw)}")
    cells: dict[str, CellGenotype] = {}
    for name, raw in cells_raw.items():
        at = top.child("cells").child(str(name))
        try:
            skip = parse_cell_name(str(name))
        except ValueError:
            skip = None
        if skip is None or cell_name(*skip) != name:
            raise at.error("cell name must be skip_<enc>_<dec> with levels 1..4")
        if space is not None and skip not in set(space.skips):
            raise at.error(f"not a skip of search space '{space.name}'")
        if raw == ABSENT:
            cells[name] = CellGenotype.absent()
        elif raw is None:
            raise at.error(f"empty (is the file cut short?); expected edges, ssb and csb, or `{ABSENT}` "
                           "for a skip the network does not have")
        else:
            cells[name] = _parse_cell(raw, at, backbone.nodes)
    _check_every_cell(cells, space, top.child("cells"))
    return Genotype(search_space=space_name, backbone=backbone, source=dict(src), cells=cells)


def _check_every_cell(cells: Mapping[str, CellGenotype], space: Any, at: _Where) -> None:
    """Every skip of the space is listed (in full or as `absent`): a file cut at a line end, or
    `cells: {}`, must not quietly build a network with fewer skips."""
    if space is not None:
        missing = [cell_name(*skip) for skip in space.skips if cell_name(*skip) not in cells]
        if missing:
            raise at.error(f"missing {', '.join(missing)} of search space '{space.name}' (is the file cut "
                           f"short?); list every cell, writing `<cell>: {ABSENT}` for a skip the network "
                           "does not have")
    elif not cells:
        raise at.error(f"no cells (is the file cut short?); list every cell of the search space, writing "
                       f"`<cell>: {ABSENT}` for a skip the network does not have")


def _parse_backbone(raw: Any, at: _Where) -> Backbone:
    keys = ("in_channels", "widths", "nodes", "node_width", "resample_down", "head_channels")
    raw = _mapping(raw, at, keys)
    widths = _list(raw["widths"], at.child("widths"), f"{N_WIDTHS} encoder widths")
    if len(widths) != N_WIDTHS:
        raise at.child("widths").error(f"expected {N_WIDTHS} encoder widths, got {len(widths)}")
    return Backbone(
        in_channels=_int(raw["in_channels"], at.child("in_channels"), 1),
        widths=[_int(w, at.child("widths").child(i), 1) for i, w in enumerate(widths)],
        nodes=_int(raw["nodes"], at.child("nodes"), 1),
        node_width=_int(raw["node_width"], at.child("node_width"), 1),
        resample_down=_choice(raw["resample_down"], at.child("resample_down"), RESAMPLE_DOWN),
        head_channels=_int(raw["head_channels"], at.child("head_channels"), 1, 2),
    )


def _try_load_space(name: str) -> Any:
    """The named search space if it can be loaded, else None (a genotype outlives its space file)."""
    from nas.search_space import load_search_space

    try:
        return load_search_space(name)
    except UserError:
        return None


def _check_backbone_matches(backbone: Backbone, space: Any, at: _Where) -> None:
    expected = Backbone.from_space(space).to_dict()
    for key, value in backbone.to_dict().items():
        if value != expected[key]:
            raise at.child(key).error(
                f"{value!r} differs from search space '{space.name}' ({expected[key]!r})")


def _parse_cell(raw: Any, at: _Where, n_nodes: int) -> CellGenotype:
    if isinstance(raw, str):
        raise at.error(f"expected a mapping with keys edges, ssb, csb, or the word `{ABSENT}`, got {_show(raw)}")
    raw = _mapping(raw, at, ("edges", "ssb", "csb"), ("note",))
    edges_at = at.child("edges")
    edges = [_parse_edge(e, edges_at.child(i), n_nodes) for i, e in enumerate(_list(raw["edges"], edges_at, "edges"))]
    seen: set[tuple[int, int, str]] = set()
    for i, e in enumerate(edges):
        if (e.to, e.from_, e.op) in seen:
            raise edges_at.child(i).error(f"duplicate edge {e.from_}->{e.to} {e.op}")
        seen.add((e.to, e.from_, e.op))
    fed = {e.to for e in edges}
    for i, e in enumerate(edges):
        if e.from_ and e.from_ not in fed:
            raise edges_at.child(i).child("from").error(f"node {e.from_} has no incoming edge, so it has no value")
    blocks = [_parse_block(raw[b], at.child(b), n_nodes, fed) for b in ("ssb", "csb")]
    notes = raw.get("note") or []
    if isinstance(notes, str):
        notes = [notes]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise at.child("note").error(f"expected a list of strings, got {_show(notes)}")
    return CellGenotype(edges=edges, ssb=blocks[0], csb=blocks[1], notes=list(notes))


def _parse_edge(raw: Any, at: _Where, n_nodes: int) -> Edge:
    from nas.ops import OPS

    raw = _mapping(raw, at, ("to", "from", "op", "weight"))
    to = _int(raw["to"], at.child("to"), 1, n_nodes)
    from_ = _int(raw["from"], at.child("from"), 0)
    if from_ >= to:
        raise at.child("from").error(f"must be a node before 'to' ({to}), i.e. in 0..{to - 1}; got {from_}")
    op = raw["op"]
    if not isinstance(op, str) or op not in OPS:
        raise at.child("op").error(f"unknown op {_show(op)}; known ops: {', '.join(sorted(OPS))}")
    if op == "zero":
        raise at.child("op").error("'zero' contributes nothing and cannot be a kept edge")
    return Edge(to=to, from_=from_, op=op, weight=_weight(raw["weight"], at.child("weight")))


def _parse_block(raw: Any, at: _Where, n_nodes: int, fed: set[int]) -> Block:
    raw = _mapping(raw, at, ("gating", "nodes", "weights"))
    gating = _choice(raw["gating"], at.child("gating"), GATINGS)
    nodes_at, weights_at = at.child("nodes"), at.child("weights")
    nodes = [_int(n, nodes_at.child(i), 1, n_nodes) for i, n in enumerate(_list(raw["nodes"], nodes_at, "node numbers"))]
    if len(set(nodes)) != len(nodes):
        raise nodes_at.error(f"duplicate node in {nodes}")
    for i, n in enumerate(nodes):
        if n not in fed:
            raise nodes_at.child(i).error(f"node {n} has no incoming edge, so it has no value")
    weights_raw = _list(raw["weights"], weights_at, "numbers")
    if len(weights_raw) != len(nodes):
        raise weights_at.error(f"has {len(weights_raw)} entries but nodes has {len(nodes)}")
    weights = [_weight(w, weights_at.child(i)) for i, w in enumerate(weights_raw)]
    return Block(gating=gating, nodes=nodes, weights=weights)


__all__ = [
    "ABSENT",
    "FORMAT",
    "Backbone",
    "Block",
    "CellGenotype",
    "Edge",
    "Genotype",
    "load_genotype",
    "prune_cell",
    "prune_edges",
    "round_weight",
    "genotype_text",
    "save_genotype",
]
