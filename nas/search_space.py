"""Search-space specs: which skips are searched, with which ops, nodes and widths.

A search space is a small YAML file (``search_spaces/<name>.yaml``, shipped with the package)
or any path to such a file. It is validated on load so that a mistake is reported as one line
naming the file and the entry (``search_spaces/x.yaml: skips[3]: ...``) instead of a shape error
deep inside the supernet. ``SearchSpace.to_dict()`` is what a run folder stores as
``search_space.yaml``; loading that file (or the dict) gives back an equal ``SearchSpace``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nas.errors import UserError
from nas.ops import OPS
from nas.skip_grid import GATINGS, LEVELS, N_WIDTHS, RESAMPLE_DOWN  # LEVELS, RESAMPLE_DOWN re-exported
from nas.textfiles import read_yaml


def search_space_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``: the source checkout, then the installed data files."""
    return [
        Path(__file__).resolve().parent.parent / "search_spaces",
        Path(sys.prefix) / "share" / "skipnas" / "search_spaces",
    ]


def list_search_spaces() -> list[str]:
    """Names of the search spaces found in :func:`search_space_dirs`."""
    names = {p.stem for d in search_space_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


@dataclass
class SearchSpace:
    """A validated search space (see ``docs/internals.md``).

    ``skips`` are ``(enc, dec)`` level pairs, level 1 = full resolution; each becomes one
    ``SkipCell`` named ``skip_<enc>_<dec>``.
    """

    name: str
    in_channels: int
    widths: list[int]
    nodes: int
    node_width: int
    ops: list[str]
    skips: list[tuple[int, int]]
    resample_down: str = "maxpool"
    ssb_gating: str = "softmax"
    csb_gating: str = "sigmoid"
    head_channels: int = 2
    source: str = field(default="<dict>", compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> SearchSpace:
        """Validate ``data`` (a parsed YAML mapping); errors name ``source`` and the entry."""
        return _parse(data, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict; ``SearchSpace.from_dict(s.to_dict()) == s``."""
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "widths": list(self.widths),
            "nodes": self.nodes,
            "node_width": self.node_width,
            "ops": list(self.ops),
            "skips": [[e, d] for e, d in self.skips],
            "resample_down": self.resample_down,
            "ssb_gating": self.ssb_gating,
            "csb_gating": self.csb_gating,
            "head_channels": self.head_channels,
        }

    def skips_into(self, dec: int) -> list[int]:
        """Encoder levels feeding decoder level ``dec``, shallowest first."""
        return sorted(e for e, d in self.skips if d == dec)


def load_search_space(name_or_path: str | Path | Mapping[str, Any]) -> SearchSpace:
    """Load a search space by name (``unet_fullscale``), by path to a YAML file, or from a dict."""
    if isinstance(name_or_path, Mapping):
        return SearchSpace.from_dict(name_or_path)
    text = str(name_or_path)
    path = Path(text)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or "\\" in text
    if looks_like_path or path.is_file():
        if not path.exists():
            raise UserError(f"{text}: search-space file not found")
        return _load_file(path, text)
    for folder in search_space_dirs():
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return _load_file(candidate, f"search_spaces/{text}.yaml")
    known = ", ".join(list_search_spaces()) or "none found"
    raise UserError(f"unknown search space '{text}'; known: {known}")


def _load_file(path: Path, source: str) -> SearchSpace:
    data = read_yaml(path, "search-space file")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    data = dict(data)
    data.setdefault("name", path.stem)
    return SearchSpace.from_dict(data, source)


# --------------------------------------------------------------------------- validation

_REQUIRED = ("in_channels", "widths", "nodes", "node_width", "ops", "skips")
_OPTIONAL = ("name", "resample_down", "ssb_gating", "csb_gating", "head_channels")


def _parse(data: Mapping[str, Any], source: str) -> SearchSpace:
    def fail(key: str, message: str) -> UserError:
        return UserError(f"{source}: {key}: {message}")

    unknown = [k for k in data if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        known = ", ".join(_REQUIRED + _OPTIONAL)
        raise fail(str(unknown[0]), f"unknown key; known keys: {known}")
    for key in _REQUIRED:
        if key not in data:
            raise fail(key, "missing")

    def positive_int(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(key, f"expected an integer >= 1, got {value!r}")
        return value

    def choice(key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = data.get(key, default)
        if value not in allowed:
            raise fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    widths = data["widths"]
    if not isinstance(widths, list) or len(widths) != N_WIDTHS:
        raise fail("widths", f"expected a list of {N_WIDTHS} encoder widths, got {widths!r}")
    widths = [positive_int(f"widths[{i}]", w) for i, w in enumerate(widths)]

    ops = data["ops"]
    if not isinstance(ops, list) or not ops:
        raise fail("ops", f"expected a non-empty list of op names, got {ops!r}")
    for i, op in enumerate(ops):
        if op not in OPS:
            raise fail(f"ops[{i}]", f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
        if op in ops[:i]:
            raise fail(f"ops[{i}]", f"duplicate op {op!r}")
    if all(op == "zero" for op in ops):
        raise fail("ops", "needs at least one op other than 'zero'")

    skips_raw = data["skips"]
    if not isinstance(skips_raw, list) or not skips_raw:
        raise fail("skips", "expected a non-empty list of [encoder_level, decoder_level] pairs")
    skips: list[tuple[int, int]] = []
    for i, pair in enumerate(skips_raw):
        key = f"skips[{i}]"
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in pair)
        ):
            raise fail(key, f"expected [encoder_level, decoder_level], got {pair!r}")
        enc, dec = pair
        for what, level in (("encoder", enc), ("decoder", dec)):
            if level not in LEVELS:
                raise fail(key, f"{what} level {level} not in 1..4")
        if (enc, dec) in skips:
            raise fail(key, f"duplicate skip [{enc}, {dec}]")
        skips.append((enc, dec))

    name = data.get("name", "custom")
    if not isinstance(name, str) or not name:
        raise fail("name", f"expected a non-empty string, got {name!r}")
    head = data.get("head_channels", 2)
    if head not in (1, 2) or isinstance(head, bool):
        raise fail("head_channels", f"expected 1 or 2, got {head!r}")
    return SearchSpace(
        name=name,
        in_channels=positive_int("in_channels", data["in_channels"]),
        widths=widths,
        nodes=positive_int("nodes", data["nodes"]),
        node_width=positive_int("node_width", data["node_width"]),
        ops=list(ops),
        skips=skips,
        resample_down=choice("resample_down", "maxpool", RESAMPLE_DOWN),
        ssb_gating=choice("ssb_gating", "softmax", GATINGS),
        csb_gating=choice("csb_gating", "sigmoid", GATINGS),
        head_channels=head,
        source=source,
    )
