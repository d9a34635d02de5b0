"""Genotype file: exact round trip, and one-line errors naming file, cell and field."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from nas.errors import UserError
from nas.genotype import (FORMAT, Backbone, Block, CellGenotype, Edge, Genotype, load_genotype, prune_edges,
                          save_genotype)
from nas.search_space import load_search_space


def tiny_genotype_dict() -> dict:
    """A valid genotype of the shipped `tiny` space (2 nodes, classic skips)."""
    return {
        "format": FORMAT,
        "search_space": "tiny",
        "backbone": Backbone.from_space(load_search_space("tiny")).to_dict(),
        "source": {"run": "runs/x", "epoch": 3, "policy": "thesis", "k": 3},
        "cells": {
            "skip_1_1": {
                "edges": [
                    {"to": 1, "from": 0, "op": "sep_conv_3x3", "weight": 0.4},
                    {"to": 2, "from": 0, "op": "max_pool_3x3", "weight": 0.2},
                    {"to": 2, "from": 1, "op": "identity", "weight": 0.3},
                ],
                "ssb": {"gating": "softmax", "nodes": [1, 2], "weights": [0.6, 0.4]},
                "csb": {"gating": "sigmoid", "nodes": [2], "weights": [0.55]},
            },
            "skip_3_3": {
                "edges": [{"to": 1, "from": 0, "op": "dil_conv_5x5", "weight": 0.123456789}],
                "ssb": {"gating": "softmax", "nodes": [1], "weights": [1.0]},
                "csb": {"gating": "sigmoid", "nodes": [], "weights": []},
                "note": ["hand-made"],
            },
            "skip_2_2": "absent",
            "skip_4_4": "absent",
        },
    }


def write(tmp_path: Path, data: object, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_round_trip_is_exact(tmp_path: Path) -> None:
    g = load_genotype(write(tmp_path, tiny_genotype_dict()))
    assert g.cells["skip_3_3"].edges[0].weight == 0.123457  # rounded to 6 decimals on creation
    assert g.cells["skip_3_3"].notes == ["hand-made"]
    first = save_genotype(g, tmp_path / "a.yaml").read_text()
    again = load_genotype(tmp_path / "a.yaml")
    second = save_genotype(again, tmp_path / "b.yaml").read_text()
    assert first == second
    assert again == g
    assert Genotype.from_dict(g.to_dict()) == g
    assert first.startswith(f"format: {FORMAT}\n")
    assert "- {to: 1, from: 0, op: sep_conv_3x3, weight: 0.4}" in first  # one diff-able line per edge


def test_records_round_weights() -> None:
    assert Edge(1, 0, "identity", 1 / 3).weight == 0.333333
    assert Block("softmax", [1, 2], [2 / 3, 1 / 3]).weights == [0.666667, 0.333333]


def test_validate_in_memory_genotype() -> None:
    g = Genotype.from_dict(tiny_genotype_dict())
    g.cells["skip_1_1"].edges[0].op = "conv_9x9"
    with pytest.raises(UserError, match=r"^mine: cells\.skip_1_1\.edges\[0\]\.op: unknown op 'conv_9x9'"):
        g.validate("mine")


def _set(path: str, value: object):
    """A mutation of the valid dict: set (or delete, for value ...) the entry at a dotted path."""
    def mutate(d: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in keys[:-1]:
            d = d[k]
        if value is ...:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    return mutate


def _rename_cell(old: str, new: str):
    def mutate(d: dict) -> None:
        d["cells"][new] = d["cells"].pop(old)
    return mutate


E0 = "cells.skip_1_1.edges.0"
ERRORS = [
    (_set("format", ...), r"format: missing; expected 'skipnas-genotype/1'"),
    (_set("format", "skipnas-genotype/2"), r"format: unsupported version 'skipnas-genotype/2'"),
    (_set("cells", ...), r"cells: missing"),
    (_set("extra", 1), r"extra: unknown key"),
    (_set(f"{E0}.op", "conv_9x9"), r"cells\.skip_1_1\.edges\[0\]\.op: unknown op 'conv_9x9'"),
    (_set(f"{E0}.op", "zero"), r"cells\.skip_1_1\.edges\[0\]\.op: 'zero' contributes nothing"),
    (_set(f"{E0}.to", 3), r"cells\.skip_1_1\.edges\[0\]\.to: expected an integer in 1\.\.2, got 3"),
    (_set(f"{E0}.to", "1"), r"cells\.skip_1_1\.edges\[0\]\.to: expected an integer"),
    (_set(f"{E0}.from", 1), r"cells\.skip_1_1\.edges\[0\]\.from: must be a node before 'to' \(1\)"),
    (_set(f"{E0}.weight", "heavy"), r"cells\.skip_1_1\.edges\[0\]\.weight: expected a number in \[0, 1\], got 'heavy'"),
    (_set(f"{E0}.weight", 1.5), r"cells\.skip_1_1\.edges\[0\]\.weight: expected a number in \[0, 1\]"),
    (_set(f"{E0}.weight", ...), r"cells\.skip_1_1\.edges\[0\]\.weight: missing"),
    (_set(f"{E0}.to", 2), r"cells\.skip_1_1\.edges\[2\]\.from: node 1 has no incoming edge"),
    (_set("cells.skip_3_3.csb", {"gating": "sigmoid", "nodes": [2], "weights": [0.5]}),
     r"cells\.skip_3_3\.csb\.nodes\[0\]: node 2 has no incoming edge"),
    (_set("cells.skip_1_1.edges.2", {"to": 2, "from": 0, "op": "max_pool_3x3", "weight": 0.1}),
     r"cells\.skip_1_1\.edges\[2\]: duplicate edge 0->2 max_pool_3x3"),
    (_rename_cell("skip_1_1", "skip_5_1"), r"cells\.skip_5_1: cell name must be skip_<enc>_<dec>"),
    (_rename_cell("skip_1_1", "cell_1_1"), r"cells\.cell_1_1: cell name must be skip_<enc>_<dec>"),
    (_rename_cell("skip_1_1", "skip_2_1"), r"cells\.skip_2_1: not a skip of search space 'tiny'"),
    (_set("backbone.widths", [8, 8, 8, 16, 16]), r"backbone\.widths: \[8, 8, 8, 16, 16\] differs from search space 'tiny'"),
    (_set("backbone.widths", [4, 8]), r"backbone\.widths: expected 5 encoder widths, got 2"),
    (_set("backbone.nodes", 0), r"backbone\.nodes: expected an integer >= 1, got 0"),
    (_set("cells.skip_1_1.ssb.nodes", [1, 4]), r"cells\.skip_1_1\.ssb\.nodes\[1\]: expected an integer in 1\.\.2, got 4"),
    (_set("cells.skip_1_1.ssb.nodes", [1, 1]), r"cells\.skip_1_1\.ssb\.nodes: duplicate node"),
    (_set("cells.skip_1_1.csb.weights", [0.5, 0.5]), r"cells\.skip_1_1\.csb\.weights: has 2 entries but nodes has 1"),
    (_set("cells.skip_1_1.csb.weights", ["x"]), r"cells\.skip_1_1\.csb\.weights\[0\]: expected a number"),
    (_set("cells.skip_1_1.csb.gating", "relu"), r"cells\.skip_1_1\.csb\.gating: expected one of softmax, sigmoid"),
    (_set("cells.skip_1_1.ssb", ...), r"cells\.skip_1_1\.ssb: missing"),
    (_set("cells.skip_1_1.edges", {"to": 1}), r"cells\.skip_1_1\.edges: expected a list of edges"),
    (_set("cells.skip_1_1.note", 3), r"cells\.skip_1_1\.note: expected a list of strings"),
]


@pytest.mark.parametrize("mutate,message", ERRORS, ids=[m for _, m in ERRORS])
def test_validation_errors_name_file_cell_and_field(tmp_path: Path, mutate, message: str) -> None:
    data = copy.deepcopy(tiny_genotype_dict())
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(UserError) as err:
        load_genotype(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert re.search(message, text), text


def test_space_checks_skipped_when_space_unknown(tmp_path: Path) -> None:
    """A genotype outlives its search-space file: only structural checks then."""
    data = tiny_genotype_dict()
    data["search_space"] = "gone_space"
    data["backbone"]["widths"] = [2, 4, 4, 8, 8]
    data["cells"]["skip_2_1"] = data["cells"].pop("skip_1_1")
    g = load_genotype(write(tmp_path, data))
    assert set(g.cells) == {"skip_2_1", "skip_3_3", "skip_2_2", "skip_4_4"}
    assert g.cells["skip_2_2"].is_absent and not g.cells["skip_2_1"].is_absent


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.yaml: genotype file not found"):
        load_genotype(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cells: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        load_genotype(bad)
    with pytest.raises(UserError, match=r"list.yaml: expected a genotype mapping"):
        load_genotype(write(tmp_path, [1, 2], "list.yaml"))


def test_prune_edges_drops_dead_and_unfed_nodes() -> None:
    edges = [Edge(1, 0, "identity", 1), Edge(2, 1, "identity", 1), Edge(3, 0, "identity", 1),
             Edge(3, 2, "identity", 1)]
    kept, live = prune_edges(edges, {3})
    assert live == {1, 2, 3} and kept == edges
    kept, live = prune_edges(edges[2:], {3})  # node 2 gets no input: edge 2->3 goes
    assert live == {3} and kept == [edges[2]]
    kept, live = prune_edges(edges, {1})  # 2 and 3 feed no output
    assert live == {1} and kept == [edges[0]]


def test_cell_live_view() -> None:
    cell = CellGenotype(edges=[Edge(1, 0, "identity", 1), Edge(2, 0, "identity", 1)],
                        ssb=Block("softmax", [2], [1]), csb=Block("sigmoid", [], []))
    edges, ssb, csb = cell.live()
    assert [e.to for e in edges] == [2] and ssb == [2] and csb == []


def test_absent_cells_are_written_as_one_word_and_round_trip(tmp_path: Path) -> None:
    g = load_genotype(write(tmp_path, tiny_genotype_dict()))
    assert g.cells["skip_2_2"] == CellGenotype.absent() and g.cells["skip_2_2"].is_absent
    assert not g.cells["skip_3_3"].is_absent  # a cell with a note is never shortened
    text = save_genotype(g, tmp_path / "a.yaml").read_text()
    assert "  skip_2_2: absent\n  skip_4_4: absent\n" in text
    assert save_genotype(load_genotype(tmp_path / "a.yaml"), tmp_path / "b.yaml").read_text() == text


def test_older_empty_cell_form_still_loads_as_absent(tmp_path: Path) -> None:
    """Files written before `absent` existed spelt an unused cell out in full; they still load."""
    data = tiny_genotype_dict()
    data["cells"]["skip_2_2"] = {"edges": [], "ssb": {"gating": "softmax", "nodes": [], "weights": []},
                                 "csb": {"gating": "sigmoid", "nodes": [], "weights": []}}
    g = load_genotype(write(tmp_path, data))
    assert g.cells["skip_2_2"].is_absent
    assert g.to_dict()["cells"]["skip_2_2"] == "absent"


def test_every_cell_of_the_space_is_required(tmp_path: Path) -> None:
    data = tiny_genotype_dict()
    del data["cells"]["skip_4_4"]
    with pytest.raises(UserError, match=r"cells: missing skip_4_4 of search space 'tiny' \(is the file cut short\?\)"):
        load_genotype(write(tmp_path, data))
    g = Genotype.from_dict(tiny_genotype_dict())
    del g.cells["skip_1_1"]
    with pytest.raises(UserError, match=r"^mine: cells: missing skip_1_1"):
        g.validate("mine")


def test_search_space_and_genotype_do_not_import_each_other() -> None:
    """The shared names live in nas.skip_grid; search_space must not import genotype."""
    import ast
    import inspect

    import nas.search_space

    tree = ast.parse(inspect.getsource(nas.search_space))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "nas.genotype" not in imported
