"""Benchmark suites: train several models under one protocol, then write the comparison report.

A suite file (`experiments/suite_*.yaml`) names a base config shared by every entry, the seeds,
and the entries (a baseline `model:`, a `genotype:` file, a `search:` that is run and
discretized first, or `random:` genotypes of a search entry's space, the control a search must
beat). A comparison is only fair when every model sees the same images, splits, augmentation and
epoch budget, so entries may change `model.*` keys only (search entries also `search.*`);
anything else is refused when the file is loaded, before any training starts. Paths in the file
(`base.config`, `data.root` in `base.set`, `genotype:`, `evaluate_on[].root`) are relative to it.

After training, every run is scored on each `evaluate_on:` dataset (external test sets), and the
report compares every model with a `reference:` (default: the best hand-designed baseline) with
paired statistics, per dataset.

Suites run sequentially and are resumable: a run folder whose `summary.json` says it finished
is skipped, one with a checkpoint but no summary is resumed, and a folder that was trained
with a different configuration is refused rather than silently mixed into the report.

    name: quick
    base: {config: quickstart.yaml, set: [data.image_size=64, train.epochs=2]}
    seeds: [1, 2]
    entries:
      - {name: unet_small, model: unet, set: [model.width=8]}
      - {name: searched, genotype: ../runs/x/genotype.yaml, set: [model.width_multiplier=2]}
      - {name: searched_quick, search: {set: [train.epochs=1]}}
      - {name: random, random: {samples: 3, seed: 0, from: searched_quick}}
    reference: unet_small
    evaluate_on:
      - {name: heldout, root: ../data/heldout, layout: folder, limit: 50}

Layout of the output folder: `<entry>/seed<k>/` (retrain runs), `<entry>/sample<j>/seed<k>/`
(random entries), `<entry>/search/` (search run), `genotypes/<entry>.yaml` (discretized
genotype; `<entry>-sample<j>.yaml` for random ones), `<run>/evaluation-<dataset>/` (external
scores and predictions), `datasets/` (limited views of external datasets), `suite.yaml` (copy of
the suite file), `report.md`, `report.csv`, `report_stats.csv` and the charts; with random
entries also `ranking.csv` and `ranking_stats.csv` (see :mod:`nas.ranking`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import yaml

from nas.config import Config, config_to_dict, flat_keys, load_config
from nas.errors import UserError
from nas.external_sets import EvalDataset, check_datasets, evaluate_runs
from nas.runs import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from nas.comparison import Comparison, RunResult

SUITE_KEYS = ("name", "description", "base", "seeds", "reference", "evaluate_on", "entries")
BASE_KEYS = ("config", "set")
ENTRY_KEYS = ("name", "model", "genotype", "search", "random", "set")
SEARCH_KEYS = ("set", "policy", "k")
RANDOM_KEYS = ("samples", "seed", "from")
EVAL_KEYS = ("name", "root", "layout", "limit")
# The search run may change its own budget and method, never the data it sees.
SEARCH_RUN_PREFIXES = ("search.", "train.", "discretize.", "log.")
# Settings that do not change results: a run may be resumed with other values.
IGNORED_ON_RESUME = ("log.", "run.device", "run.workers", "run.threads", "run.distributed", "data.cache")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SearchSpec:
    overrides: list[str] = field(default_factory=list)
    policy: Optional[str] = None
    k: Optional[int] = None


@dataclass
class RandomSpec:
    """`samples` random genotypes (sampling seeds `seed`, `seed`+1, ...) of the search space,
    policy and k of search entry `source` (None: the base config's `search.space`, `discretize.*`)."""

    samples: int
    seed: int = 0
    source: Optional[str] = None

    @property
    def sample_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.samples)]


@dataclass
class SuiteEntry:
    index: int
    name: str
    model: Optional[str] = None
    genotype: Optional[Path] = None
    search: Optional[SearchSpec] = None
    random: Optional[RandomSpec] = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class Suite:
    path: Path
    name: str
    base_config: Optional[Path]
    base_overrides: list[str]
    seeds: list[int]
    entries: list[SuiteEntry]
    reference: Optional[str] = None
    evaluate_on: list[EvalDataset] = field(default_factory=list)

    def where(self, entry: Optional[SuiteEntry] = None) -> str:
        """Error prefix: `suite x.yaml` or `suite x.yaml: entries[2] (name)`."""
        return f"suite {self.path}" + (f": entries[{entry.index}] ({entry.name})" if entry else "")

    def entry(self, name: str) -> SuiteEntry:
        return next(e for e in self.entries if e.name == name)

    def model_overrides(self, entry: SuiteEntry) -> list[str]:
        """The entry's `set:`; a random entry first takes its source search entry's (same width)."""
        if entry.random is not None and entry.random.source is not None:
            return [*self.entry(entry.random.source).overrides, *entry.overrides]
        return list(entry.overrides)

    def retrain_config(self, entry: SuiteEntry, seed: int, genotype: Optional[Path] = None) -> Config:
        """Base + the entry's model choice + its model.* overrides + the seed."""
        if entry.model is not None:
            model = [f"model.name={entry.model}", "model.genotype=null"]
        else:
            path = genotype or entry.genotype
            model = ["model.name=null", f"model.genotype={path.resolve() if path else 'genotype.yaml'}"]
        return self._config(entry, [*model, *self.model_overrides(entry), f"run.seed={seed}"])

    def random_settings(self, entry: SuiteEntry) -> tuple[str, str, int, float]:
        """(search space, policy, k, threshold) a random entry samples with: its source search
        entry's, as that entry's genotype is discretized; else the base config's."""
        assert entry.random is not None
        if entry.random.source is not None:
            source = self.entry(entry.random.source)
            assert source.search is not None
            cfg = self.search_config(source)
            return (cfg.search.space, source.search.policy or cfg.discretize.policy,
                    source.search.k or cfg.discretize.k, cfg.discretize.threshold)
        cfg = self.retrain_config(entry, self.seeds[0])
        return cfg.search.space, cfg.discretize.policy, cfg.discretize.k, cfg.discretize.threshold

    def random_pairs(self) -> list[tuple[str, str]]:
        """(searched, random) rows the report contrasts: each random entry with its source, or
        with every search and genotype entry when it has none."""
        pairs = []
        for e in self.entries:
            if e.random is None:
                continue
            sources = ([e.random.source] if e.random.source else
                       [o.name for o in self.entries if o.search is not None or o.genotype is not None])
            pairs += [(s, e.name) for s in sources]
        return pairs

    def search_config(self, entry: SuiteEntry) -> Config:
        """Base + the entry's overrides + its search-only overrides; searched once, at the first seed."""
        assert entry.search is not None
        return self._config(entry, [*entry.overrides, *entry.search.overrides, f"run.seed={self.seeds[0]}"])

    def _config(self, entry: SuiteEntry, extra: list[str]) -> Config:
        try:
            return load_config(self.base_config, [*self.base_overrides, *extra])
        except UserError as exc:
            raise UserError(f"{self.where(entry)}: {exc}") from None


# ----------------------------------------------------------------------------- loading
def _mapping(value: Any, where: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping with keys {', '.join(keys)}, got {value!r}")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    return value


def _overrides(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise UserError(f"{where}: set: expected a list of KEY=VALUE strings, got {value!r}")
    return list(value)


def _key(override: str) -> str:
    return override.partition("=")[0].strip()


def _check_prefixes(overrides: list[str], allowed: tuple[str, ...], where: str) -> None:
    for text in overrides:
        key = _key(text)
        if key in ("model.name", "model.genotype"):
            raise UserError(f"{where}: sets {key}; use the entry's model: or genotype: key instead")
        if not key.startswith(allowed):
            raise UserError(f"{where}: sets {key}; data, splits and budget must be identical across entries "
                            f"(entries may set only {', '.join(p + '*' for p in allowed)})")


def _existing(path_text: Any, base: Path, where: str, what: str) -> Path:
    if not isinstance(path_text, str) or not path_text:
        raise UserError(f"{where}: {what}: expected a file path, got {path_text!r}")
    path = Path(path_text)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise UserError(f"{where}: {what}: {path} not found (paths are relative to the suite file)")
    return path


def _parse_search(raw: Any, where: str) -> SearchSpec:
    raw = _mapping({} if raw is None else raw, f"{where}: search", SEARCH_KEYS)
    overrides = _overrides(raw.get("set"), f"{where}: search")
    for text in overrides:
        if not _key(text).startswith(SEARCH_RUN_PREFIXES):
            raise UserError(f"{where}: search: sets {_key(text)}; the search must use the suite's data and run "
                            f"settings (search.set may set only {', '.join(p + '*' for p in SEARCH_RUN_PREFIXES)})")
    k = raw.get("k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise UserError(f"{where}: search: k: expected a positive int, got {k!r}")
    policy = raw.get("policy")
    if policy is not None and not isinstance(policy, str):
        raise UserError(f"{where}: search: policy: expected a name, got {policy!r}")
    return SearchSpec(overrides=overrides, policy=policy, k=k)


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{where}: expected an int >= {minimum}, got {value!r}")
    return value


def _parse_random(raw: Any, where: str) -> RandomSpec:
    raw = _mapping(raw, f"{where}: random", RANDOM_KEYS)
    if "samples" not in raw:
        raise UserError(f"{where}: random: samples: required (how many random genotypes to train)")
    source = raw.get("from")
    if source is not None and not isinstance(source, str):
        raise UserError(f"{where}: random: from: expected the name of a search entry, got {source!r}")
    return RandomSpec(samples=_positive_int(raw["samples"], f"{where}: random: samples"),
                      seed=_positive_int(raw.get("seed", 0), f"{where}: random: seed", minimum=0), source=source)


def _resolve_random_sources(entries: list[SuiteEntry], where: str) -> None:
    """`from:` must name a search entry; without it, the suite's only search entry is the source
    (none: the base config's space and discretize settings; several: name one)."""
    searches = [e.name for e in entries if e.search is not None]
    for e in entries:
        if e.random is None:
            continue
        if e.random.source is None:
            if len(searches) > 1:
                raise UserError(f"{where}: entries[{e.index}] ({e.name}): random: from: required, the suite has "
                                f"several search entries ({', '.join(searches)})")
            e.random.source = searches[0] if searches else None
        elif e.random.source not in searches:
            raise UserError(f"{where}: entries[{e.index}] ({e.name}): random: from: no search entry named "
                            f"{e.random.source!r} (search entries: {', '.join(searches) or 'none'})")


def _parse_evaluate_on(raw: Any, where: str, base: Path) -> list[EvalDataset]:
    """External test sets: name (folder-safe, not `test`), root (relative to the suite file),
    layout (default auto), limit (first N ids in the `data.limit` order). The folders themselves
    are checked when the suite runs (:func:`nas.external_sets.check_datasets`), before any training."""
    from nas.data.layouts import layout_names

    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: evaluate_on: expected a list of datasets {{name, root, layout, limit}}")
    out: list[EvalDataset] = []
    for i, item in enumerate(raw):
        w = f"{where}: evaluate_on[{i}]"
        item = _mapping(item, w, EVAL_KEYS)
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name == "test":
            raise UserError(f"{w}: name: expected a folder-safe name other than 'test' (letters, digits, _ . -), "
                            f"got {name!r}")
        if name in {d.name for d in out}:
            raise UserError(f"{w} ({name}): name: used by another dataset")
        root_text = item.get("root")
        if not isinstance(root_text, str) or not root_text:
            raise UserError(f"{w} ({name}): root: expected a dataset folder, got {root_text!r}")
        root = Path(root_text) if Path(root_text).is_absolute() else base / root_text
        layout = item.get("layout", "auto")
        if layout not in ("auto", *layout_names()):
            raise UserError(f"{w} ({name}): layout: expected auto or one of {', '.join(layout_names())}, "
                            f"got {layout!r}")
        limit = item.get("limit")
        if limit is not None:
            limit = _positive_int(limit, f"{w} ({name}): limit")
        out.append(EvalDataset(name=name, root=root.resolve(), layout=layout, limit=limit))
    return out


def _resolve_data_root(override: str, base: Path) -> str:
    """`data.root=REL` in a suite's `base.set` is relative to the suite file, like its other paths."""
    key, _, value = override.partition("=")
    value = value.strip()
    if key.strip() != "data.root" or value in ("", "null", "~", "None") or Path(value).is_absolute():
        return override
    return f"data.root={(base / value).resolve()}"


def _parse_entry(raw: Any, index: int, suite_where: str, base: Path, seen: set[str]) -> SuiteEntry:
    where = f"{suite_where}: entries[{index}]"
    raw = _mapping(raw, where, ENTRY_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"{where}: name: expected a folder-safe name (letters, digits, _ . -), got {name!r}")
    if name in seen:
        raise UserError(f"{where} ({name}): name: used by another entry")
    seen.add(name)
    where = f"{where} ({name})"
    sources = [k for k in ("model", "genotype", "search", "random") if k in raw]
    if len(sources) != 1:
        raise UserError(f"{where}: expected exactly one of model, genotype, search, random; "
                        f"got {', '.join(sources) or 'none'}")
    entry = SuiteEntry(index=index, name=name, overrides=_overrides(raw.get("set"), where))
    allowed: tuple[str, ...] = ("model.",)
    if "model" in raw:
        if not isinstance(raw["model"], str) or not raw["model"]:
            raise UserError(f"{where}: model: expected a model name (see nas retrain --list-models)")
        entry.model = raw["model"]
    elif "genotype" in raw:
        entry.genotype = _existing(raw["genotype"], base, where, "genotype")
    elif "random" in raw:
        entry.random = _parse_random(raw["random"], where)
    else:
        entry.search = _parse_search(raw["search"], where)
        allowed = ("model.", "search.")
    _check_prefixes(entry.overrides, allowed, where)
    return entry


def _known_models() -> Optional[list[str]]:
    """Registered model names, or None when the model registry cannot be imported here."""
    try:
        from nas.models import list_models
    except ImportError:
        return None
    return list_models()


def _check_model_names(suite: Suite) -> None:
    """A misspelt baseline should fail at load time, not after the entries before it trained."""
    known = _known_models()
    if known is None:
        return
    for entry in suite.entries:
        if entry.model is not None and entry.model.lower().replace("-", "_") not in known:
            raise UserError(f"{suite.where(entry)}: model: unknown model {entry.model!r} "
                            f"(known: {', '.join(known)})")


def _read_suite_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"suite {path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise UserError(f"suite {path}: not valid YAML") from None
    return _mapping(raw, f"suite {path}", SUITE_KEYS)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; every config it implies is built once, so a typo in any
    entry fails here (naming the suite file and the entry), not hours into the suite."""
    path = Path(path)
    raw = _read_suite_yaml(path)
    where = f"suite {path}"
    base = _mapping(raw.get("base") or {}, f"{where}: base", BASE_KEYS)
    base_config = _existing(base["config"], path.parent, f"{where}: base", "config") if base.get("config") else None
    entries_raw = raw.get("entries")
    if not isinstance(entries_raw, list) or not entries_raw:
        raise UserError(f"{where}: entries: expected a non-empty list of models to compare")
    seen: set[str] = set()
    base_overrides = [_resolve_data_root(o, path.parent) for o in _overrides(base.get("set"), f"{where}: base")]
    suite = Suite(path=path, name=str(raw.get("name") or path.stem), base_config=base_config,
                  base_overrides=base_overrides, seeds=[],
                  entries=[_parse_entry(e, i, where, path.parent, seen) for i, e in enumerate(entries_raw)],
                  evaluate_on=_parse_evaluate_on(raw.get("evaluate_on"), where, path.parent))
    _resolve_random_sources(suite.entries, where)
    reference = raw.get("reference")
    if reference is not None and reference not in seen:
        raise UserError(f"{where}: reference: no entry named {reference!r} "
                        f"(entries: {', '.join(e.name for e in suite.entries)})")
    suite.reference = reference
    seeds = raw.get("seeds")
    if seeds is None:
        seeds = [load_config(base_config, suite.base_overrides).run.seed]
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise UserError(f"{where}: seeds: expected a non-empty list of distinct ints, got {seeds!r}")
    suite.seeds = list(seeds)
    _check_model_names(suite)
    for entry in suite.entries:  # fail now on any bad key or value
        suite.retrain_config(entry, suite.seeds[0])
        if entry.search is not None:
            suite.search_config(entry)
        if entry.random is not None:
            _check_random_settings(suite, entry)
    return suite


def _check_random_settings(suite: Suite, entry: SuiteEntry) -> None:
    from nas.discretize import check_policy
    from nas.search_space import load_search_space

    space, policy, k, threshold = suite.random_settings(entry)
    try:
        load_search_space(space)
        check_policy(policy, k, threshold)
    except UserError as exc:
        raise UserError(f"{suite.where(entry)}: random: {exc}") from None


# ----------------------------------------------------------------------------- running
def _check_same_config(run_dir: Path, cfg: Config, where: str) -> None:
    """Refuse to reuse a run folder trained with other settings (the report would mix protocols)."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = flat_keys(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    now = flat_keys(config_to_dict(cfg))
    for key in sorted(set(saved) | set(now)):
        if key.startswith(IGNORED_ON_RESUME):
            continue
        if saved.get(key) != now.get(key):
            raise UserError(f"{where}: {run_dir} was run with {key}={saved.get(key)!r}, the suite now asks for "
                            f"{now.get(key)!r}; delete that folder or use another --out")


def run_state(run_dir: Path, kind: str) -> str:
    """`done` (summary.json of this kind), `resume` (a checkpoint, no summary) or `new`."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            if json.loads(summary.read_text(encoding="utf-8")).get("kind") == kind:
                return "done"
        except (json.JSONDecodeError, AttributeError):
            pass
    return "resume" if (run_dir / "checkpoints" / "last.pt").is_file() else "new"


def _log(suite: Suite, text: str) -> None:
    print(f"suite {suite.name}: {text}", file=sys.stderr, flush=True)


def _run_unless_done(suite: Suite, entry: SuiteEntry, cfg: Config, run_dir: Path, kind: str,
                     train: Callable[..., Any], log: tuple[str, str]) -> bool:
    """Refuse a `kind` run folder trained with other settings, then run or resume it unless it
    finished earlier (returns True then). `log` is the progress line (new run, resumed run)."""
    state = run_state(run_dir, kind)
    if state != "new":
        _check_same_config(run_dir, cfg, suite.where(entry))
    if state == "done":
        return True
    _log(suite, log[state == "resume"])
    train(cfg, run_dir, resume=(state == "resume"))
    return False


def _ensure_genotype(suite: Suite, entry: SuiteEntry, out_dir: Path) -> Path:
    """Search (or resume/skip it), discretize, and copy the genotype to `genotypes/<entry>.yaml`
    so that the retrained runs are labelled by entry name."""
    from nas.discretize import discretize_run
    from nas.genotype import save_genotype
    from nas.search import search

    target = out_dir / "genotypes" / f"{entry.name}.yaml"
    cfg = suite.search_config(entry)
    run_dir = out_dir / entry.name / "search"
    done = _run_unless_done(suite, entry, cfg, run_dir, "search", search,
                            (f"{entry.name}: running search in {run_dir}",
                             f"{entry.name}: resuming search in {run_dir}"))
    if done and target.is_file():
        return target
    policy = entry.search.policy or cfg.discretize.policy
    k = entry.search.k or cfg.discretize.k
    genotype = discretize_run(run_dir, policy, k)
    if isinstance(genotype, (str, os.PathLike)):  # a written genotype file
        atomic_write_bytes(target, Path(genotype).read_bytes())
    else:  # a Genotype record
        save_genotype(genotype, target)
    _log(suite, f"{entry.name}: genotype ({policy}, k={k}) -> {target}")
    return target


def _ensure_random_genotypes(suite: Suite, entry: SuiteEntry, out_dir: Path) -> list[tuple[int, Path]]:
    """(sampling seed, file) of every random sample, written to `genotypes/<entry>-sample<j>.yaml`.
    Sampling is deterministic; an existing file that differs from a fresh sample (the source's
    space, policy or k changed) is refused, since runs trained on it would be mixed in."""
    from nas.discretize import random_genotype
    from nas.genotype import save_genotype
    from nas.search_space import load_search_space

    assert entry.random is not None
    space_name, policy, k, threshold = suite.random_settings(entry)
    space = load_search_space(space_name)
    out = []
    for j in entry.random.sample_seeds:
        target = out_dir / "genotypes" / f"{entry.name}-sample{j}.yaml"
        genotype = random_genotype(space, j, policy, k, threshold)
        fresh = yaml.safe_load(yaml.safe_dump(genotype.to_dict(), sort_keys=False))
        if target.is_file():
            if yaml.safe_load(target.read_text(encoding="utf-8")) != fresh:
                raise UserError(f"{suite.where(entry)}: {target} differs from a fresh random sample "
                                f"({space.name}, {policy}, k={k}, seed {j}); delete it and that entry's runs, "
                                f"or use another --out")
        else:
            save_genotype(genotype, target)
            _log(suite, f"{entry.name}: random genotype ({space.name}, {policy}, k={k}, seed {j}) -> {target}")
        out.append((j, target))
    return out


def _retrain_entry(suite: Suite, entry: SuiteEntry, seed: int, genotype: Optional[Path], out_dir: Path,
                   sample: Optional[int] = None) -> Path:
    from nas.train import retrain

    cfg = suite.retrain_config(entry, seed, genotype)
    run_dir = out_dir / entry.name / (f"sample{sample}" if sample is not None else "") / f"seed{seed}"
    what = f"{entry.name}{f' sample {sample}' if sample is not None else ''} seed {seed}"
    if _run_unless_done(suite, entry, cfg, run_dir, "retrain", retrain,
                        (f"{what}: training in {run_dir}", f"{what}: resuming in {run_dir}")):
        _log(suite, f"{what}: finished earlier, skipped")
    return run_dir


@dataclass
class SuiteRun:
    suite: Suite
    run_dirs: list[Path]
    labels: list[str]
    results: list[RunResult]  # one per run folder, labelled by entry
    comparison: Comparison
    written: list[Path]  # report.md first


def run_suite(path: str | Path, out_dir: Optional[str | Path] = None, reference: Optional[str] = None) -> SuiteRun:
    """Train every entry × seed (skipping finished runs, resuming interrupted ones), score every run
    on the `evaluate_on` datasets, then write `report.md`, `report.csv`, `report_stats.csv` and
    the charts into `out_dir` (default `runs/suite-<name>`). `reference` overrides the suite's."""
    from nas.comparison import build_comparison, collect_runs
    from nas.lock import folder_lock
    from nas.report import write_report

    suite = load_suite(path)
    check_datasets(suite.evaluate_on, suite.where())
    if reference is not None and reference not in [e.name for e in suite.entries]:
        raise UserError(f"compare: --reference {reference}: no entry of {suite.path} has that name "
                        f"(entries: {', '.join(e.name for e in suite.entries)})")
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / f"suite-{suite.name}"
    with folder_lock(out_dir):  # one suite per folder: two would retrain the same runs and mix reports
        run_dirs, labels = [], []
        for entry in suite.entries:
            if entry.random is not None:
                for sample, genotype in _ensure_random_genotypes(suite, entry, out_dir):
                    for seed in suite.seeds:
                        run_dirs.append(_retrain_entry(suite, entry, seed, genotype, out_dir, sample))
                        labels.append(entry.name)
                continue
            genotype = _ensure_genotype(suite, entry, out_dir) if entry.search is not None else None
            for seed in suite.seeds:
                run_dirs.append(_retrain_entry(suite, entry, seed, genotype, out_dir))
                labels.append(entry.name)
        evaluate_runs(suite.evaluate_on, run_dirs, out_dir, lambda text: _log(suite, text))
        atomic_write_bytes(out_dir / "suite.yaml", suite.path.read_bytes())  # once the runs are accepted
        results = collect_runs(run_dirs, labels, datasets=[d.name for d in suite.evaluate_on])
        comparison = build_comparison(results, reference=reference or suite.reference,
                                      random_pairs=suite.random_pairs(),
                                      reference_by="--reference" if reference else "the suite's reference:")
        from nas.ranking import suite_supernets

        written = write_report(comparison, out_dir / "report.md", title=f"Suite {suite.name}",
                               supernets=suite_supernets(suite, out_dir), ranking_path=out_dir / "ranking.csv")
    return SuiteRun(suite=suite, run_dirs=run_dirs, labels=labels, results=results, comparison=comparison,
                    written=written)
