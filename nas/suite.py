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

Suites are resumable: a run folder whose `summary.json` says it finished is skipped, one with a
checkpoint but no summary is resumed, and a folder that was trained with a different
configuration is refused rather than silently mixed into the report. Any number of processes
(workers) may run one suite into one output folder: each claims the next unfinished run through
that run folder's lock (:mod:`nas.lock`), searches before the retrains that need them, and the
worker that sees every run finished writes the report (:func:`write_suite_report`).

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
genotype; `<entry>-sample<j>.yaml` for random ones), with `search: {seeds: [...]}` one
`<entry>/search-seed<s>/` per seed, `genotypes/<entry>-seed<s>.yaml` and retrains
`<entry>/search<s>/seed<k>/`, `<run>/evaluation-<dataset>/` (external
scores and predictions), `datasets/` (limited views of external datasets), `suite.yaml` (copy of
the suite file), `report.md`, `report.csv`, `report_stats.csv` and the charts; with random
entries also `ranking.csv` and `ranking_stats.csv` (see :mod:`nas.ranking`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

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
SEARCH_KEYS = ("set", "policy", "k", "seeds")
RANDOM_KEYS = ("samples", "seed", "from")
EVAL_KEYS = ("name", "root", "layout", "limit")
# The search run may change its own budget and method, never the data it sees.
SEARCH_RUN_PREFIXES = ("search.", "train.", "discretize.", "log.")
# Settings that do not change results: a run may be resumed with other values.
IGNORED_ON_RESUME = ("log.", "run.device", "run.workers", "run.threads", "run.distributed", "data.cache")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SearchSpec:
    """How a search entry searches. `seeds` (None: one search at the suite's first seed, the
    original layout `<entry>/search/`) runs one search per seed, each retrained at every suite seed."""

    overrides: list[str] = field(default_factory=list)
    policy: Optional[str] = None
    k: Optional[int] = None
    seeds: Optional[list[int]] = None


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

    def search_config(self, entry: SuiteEntry, seed: Optional[int] = None) -> Config:
        """Base + the entry's overrides + its search-only overrides, at search seed `seed` (default:
        the entry's first search seed, else the suite's first seed)."""
        assert entry.search is not None
        if seed is None:
            seed = entry.search.seeds[0] if entry.search.seeds else self.seeds[0]
        return self._config(entry, [*entry.overrides, *entry.search.overrides, f"run.seed={seed}"])

    def search_runs(self, entry: SuiteEntry) -> list[tuple[Optional[int], str, str]]:
        """(search seed, run folder, genotype file) of each search of `entry`, relative to the
        output folder: `<entry>/search/` and `genotypes/<entry>.yaml` for the single-search form
        (seed None), `<entry>/search-seed<s>/` and `genotypes/<entry>-seed<s>.yaml` per listed seed."""
        assert entry.search is not None
        if entry.search.seeds is None:
            return [(None, f"{entry.name}/search", f"genotypes/{entry.name}.yaml")]
        return [(s, f"{entry.name}/search-seed{s}", f"genotypes/{entry.name}-seed{s}.yaml")
                for s in entry.search.seeds]

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
    seeds = raw.get("seeds")
    if seeds is not None:
        seeds = _seed_list(seeds, f"{where}: search: seeds")
    return SearchSpec(overrides=overrides, policy=policy, k=k, seeds=seeds)


def _seed_list(value: Any, where: str) -> list[int]:
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in value)):
        raise UserError(f"{where}: expected a non-empty list of distinct ints, got {value!r}")
    return list(value)


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
    suite.seeds = _seed_list(seeds, f"{where}: seeds")
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
# How often an idle worker looks again for a run to claim (a search another worker runs, or runs
# that other workers hold).
POLL_S = 2.0


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


@dataclass
class SuiteTask:
    """One run folder of a suite, the unit a worker claims: a search (then its genotype file) or
    a retrain (then its scores on the `evaluate_on` datasets)."""

    kind: str  # "search" or "retrain"
    entry: SuiteEntry
    run_dir: Path
    what: str  # for progress lines: `searched sample 3 seed 1`
    seed: int  # run.seed
    genotype: Optional[Path] = None  # search: the file it writes; retrain: the genotype it trains
    sample: Optional[int] = None  # which genotype of its report row (random sample / search seed)
    needs: Optional["SuiteTask"] = None  # the search whose genotype this retrain trains

    def config(self, suite: Suite) -> Config:
        if self.kind == "search":
            return suite.search_config(self.entry, self.seed)
        return suite.retrain_config(self.entry, self.seed, self.genotype)


def _random_genotype_path(out_dir: Path, entry: SuiteEntry, sample: int) -> Path:
    return out_dir / "genotypes" / f"{entry.name}-sample{sample}.yaml"


def plan_suite(suite: Suite, out_dir: Path) -> list[SuiteTask]:
    """Every run of the suite: the searches first (retrains need their genotypes), then the
    retrains in entry, sample, seed order (the order of the report's rows and runs)."""
    searches: list[SuiteTask] = []
    retrains: list[SuiteTask] = []
    for entry in suite.entries:
        if entry.random is not None:
            for j in entry.random.sample_seeds:
                for seed in suite.seeds:
                    retrains.append(SuiteTask("retrain", entry, out_dir / entry.name / f"sample{j}" / f"seed{seed}",
                                              f"{entry.name} sample {j} seed {seed}", seed,
                                              genotype=_random_genotype_path(out_dir, entry, j), sample=j))
            continue
        if entry.search is None:
            for seed in suite.seeds:
                retrains.append(SuiteTask("retrain", entry, out_dir / entry.name / f"seed{seed}",
                                          f"{entry.name} seed {seed}", seed, genotype=entry.genotype))
            continue
        for search_seed, run_dir, genotype in suite.search_runs(entry):
            search = SuiteTask("search", entry, out_dir / run_dir,
                               entry.name + (f" search seed {search_seed}" if search_seed is not None else " search"),
                               search_seed if search_seed is not None else suite.seeds[0],
                               genotype=out_dir / genotype)
            searches.append(search)
            folder = out_dir / entry.name / (f"search{search_seed}" if search_seed is not None else "")
            for seed in suite.seeds:
                what = f"{entry.name}{f' search {search_seed}' if search_seed is not None else ''} seed {seed}"
                retrains.append(SuiteTask("retrain", entry, folder / f"seed{seed}", what, seed,
                                          genotype=search.genotype, sample=search_seed, needs=search))
    return searches + retrains


def task_state(suite: Suite, task: SuiteTask, out_dir: Path) -> str:
    """`new` or `resume` (see :func:`run_state`), `finish` (trained, but its genotype or an
    external evaluation is missing) or `done`."""
    from nas.external_sets import evaluations_done

    state = run_state(task.run_dir, task.kind)
    if state != "done":
        return state
    if task.kind == "search":
        return "done" if task.genotype is not None and task.genotype.is_file() else "finish"
    return "done" if evaluations_done(suite.evaluate_on, task.run_dir, out_dir) else "finish"


def _log(suite: Suite, text: str) -> None:
    print(f"suite {suite.name}: {text}", file=sys.stderr, flush=True)


def _unlocked(command: Callable[..., Any]) -> Callable[..., Any]:
    """`nas.search.search` / `nas.train.retrain` without their own run-folder lock, for a worker
    that already holds it (a second lock of one folder in one process is refused)."""
    return getattr(command, "__wrapped__", command)  # set by functools.wraps in holds_run_folder


def _write_genotype(suite: Suite, task: SuiteTask, cfg: Config) -> None:
    """Discretize a finished search into its genotype file (atomic: retrains wait for it)."""
    from nas.discretize import discretize_run
    from nas.genotype import save_genotype

    assert task.entry.search is not None and task.genotype is not None
    policy = task.entry.search.policy or cfg.discretize.policy
    k = task.entry.search.k or cfg.discretize.k
    genotype = discretize_run(task.run_dir, policy, k)
    if isinstance(genotype, (str, os.PathLike)):  # a written genotype file
        atomic_write_bytes(task.genotype, Path(genotype).read_bytes())
    else:  # a Genotype record
        save_genotype(genotype, task.genotype)
    _log(suite, f"{task.entry.name}: genotype ({policy}, k={k}) -> {task.genotype}")


def _run_task(suite: Suite, task: SuiteTask, out_dir: Path) -> None:
    """Train (or resume) a claimed run unless another worker finished it meanwhile, then write its
    genotype (search) or score it on the external datasets (retrain). The caller holds its lock."""
    from nas.external_sets import evaluate_runs

    if task_state(suite, task, out_dir) == "done":
        return
    cfg = task.config(suite)
    state = run_state(task.run_dir, task.kind)
    if state != "new":
        _check_same_config(task.run_dir, cfg, suite.where(task.entry))
    if state != "done":
        if task.kind == "search":
            from nas.search import search as command

            _log(suite, f"{task.entry.name}: {'resuming' if state == 'resume' else 'running'} search in {task.run_dir}")
        else:
            from nas.train import retrain as command

            _log(suite, f"{task.what}: {'resuming in' if state == 'resume' else 'training in'} {task.run_dir}")
        _unlocked(command)(cfg, task.run_dir, resume=(state == "resume"))
    if task.kind == "search":
        _write_genotype(suite, task, cfg)
    else:
        evaluate_runs(suite.evaluate_on, [task.run_dir], out_dir, lambda text: _log(suite, text))


def _try_claim(folder: Path) -> Optional[Any]:
    """The lock of `folder` if no live process holds it (one that died is taken over), else None."""
    from nas.lock import FolderBusy, FolderLock

    for _ in range(10):
        # Created here and never removed again by the lock: a worker releasing an (empty) folder
        # must not remove it under another worker that is about to claim it.
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return FolderLock(folder, create=False).acquire()
        except FolderBusy:
            return None
        except UserError:
            if folder.is_dir():
                raise
    raise UserError(f"{folder}: keeps disappearing; is something else deleting the suite's folders?")


@contextmanager
def _waiting_lock(suite: Suite, folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock for a short shared step (genotype files, the report), waiting while
    another worker holds it."""
    said = False
    while True:
        lock = _try_claim(folder)
        if lock is not None:
            break
        if not said:
            _log(suite, f"waiting for {folder / '.nas.lock'} (another worker writes shared files)")
            said = True
        time.sleep(POLL_S)
    try:
        yield
    finally:
        lock.release()


def _names(tasks: list[SuiteTask], out_dir: Path, most: int = 3) -> str:
    names = [str(t.run_dir.relative_to(out_dir)) for t in tasks]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _work(suite: Suite, tasks: list[SuiteTask], out_dir: Path) -> None:
    """Claim and run the next unfinished run until none is left. A run is claimed through its run
    folder's lock, without waiting: one another worker holds is skipped, one whose holder died is
    taken over and resumed from its checkpoint. Retrains wait for the search they need. When
    nothing can be claimed, wait (and say for what) until other workers finish."""
    said = ""
    ran: set[Path] = set()  # finished here: not looked at again (a clock skew must not loop)
    while True:
        pending = [t for t in tasks if t.run_dir not in ran and task_state(suite, t, out_dir) != "done"]
        if not pending:
            return
        held, blocked = [], []
        for task in pending:
            if task.needs is not None and task.needs.run_dir not in ran and task.needs in pending:
                blocked.append(task)
                continue
            lock = _try_claim(task.run_dir)
            if lock is None:
                held.append(task)
                continue
            try:
                _run_task(suite, task, out_dir)
            finally:
                lock.release()
            ran.add(task.run_dir)
            said = ""
            break
        else:
            text = f"{_names(held, out_dir)} (held by other workers)" if held else ""
            if blocked:
                searches = list(dict.fromkeys(t.needs for t in blocked if t.needs is not None))
                text += ("; " if text else "") + f"{len(blocked)} retrains need {_names(searches, out_dir)}"
            if text != said:
                _log(suite, f"waiting for {text}")
                said = text
            time.sleep(POLL_S)


def _prepare_shared(suite: Suite, out_dir: Path) -> None:
    """Files every worker reads, written once under the suite folder's lock: the random genotypes
    and the linked views of limited external datasets."""
    from nas.external_sets import linked_view

    with _waiting_lock(suite, out_dir):
        for entry in suite.entries:
            if entry.random is not None:
                _ensure_random_genotypes(suite, entry, out_dir)
        for ds in suite.evaluate_on:
            if ds.limit is not None:
                linked_view(ds, out_dir)


def _ensure_random_genotypes(suite: Suite, entry: SuiteEntry, out_dir: Path) -> None:
    """Write `genotypes/<entry>-sample<j>.yaml` of every random sample. Sampling is deterministic;
    an existing file that differs from a fresh sample (the source's space, policy or k changed) is
    refused, since runs trained on it would be mixed in."""
    from nas.discretize import random_genotype
    from nas.genotype import save_genotype
    from nas.search_space import load_search_space

    assert entry.random is not None
    space_name, policy, k, threshold = suite.random_settings(entry)
    space = load_search_space(space_name)
    for j in entry.random.sample_seeds:
        target = _random_genotype_path(out_dir, entry, j)
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


@dataclass
class SuiteRun:
    suite: Suite
    run_dirs: list[Path]
    labels: list[str]
    results: list[RunResult]  # one per run folder, labelled by entry
    comparison: Comparison
    written: list[Path]  # report.md first


def write_suite_report(suite: Suite, tasks: list[SuiteTask], out_dir: Path,
                       reference: Optional[str] = None) -> SuiteRun:
    """The report step, from finished runs only: `suite.yaml`, `report.md`, `report.csv`,
    `report_stats.csv` and the charts. Runs under the suite folder's lock, so that two workers
    finishing together write one after the other (the same files: the report is deterministic)."""
    from nas.comparison import build_comparison, collect_runs
    from nas.report import write_report

    retrains = [t for t in tasks if t.kind == "retrain"]
    run_dirs = [t.run_dir for t in retrains]
    labels = [t.entry.name for t in retrains]
    with _waiting_lock(suite, out_dir):
        atomic_write_bytes(out_dir / "suite.yaml", suite.path.read_bytes())  # once the runs are accepted
        results = collect_runs(run_dirs, labels, datasets=[d.name for d in suite.evaluate_on],
                               samples=[t.sample for t in retrains])
        comparison = build_comparison(results, reference=reference or suite.reference,
                                      random_pairs=suite.random_pairs(),
                                      reference_by="--reference" if reference else "the suite's reference:")
        from nas.ranking import suite_supernets

        written = write_report(comparison, out_dir / "report.md", title=f"Suite {suite.name}",
                               supernets=suite_supernets(suite, out_dir), ranking_path=out_dir / "ranking.csv")
    return SuiteRun(suite=suite, run_dirs=run_dirs, labels=labels, results=results, comparison=comparison,
                    written=written)


def run_suite(path: str | Path, out_dir: Optional[str | Path] = None, reference: Optional[str] = None,
              report_only: bool = False) -> SuiteRun:
    """Be one worker of the suite: claim and train runs until every entry × seed is finished
    (skipping finished runs, resuming interrupted ones, scoring each on the `evaluate_on`
    datasets), then write the report into `out_dir` (default `runs/suite-<name>`). Any number of
    workers may run this on one `out_dir` at once. `report_only` trains nothing: it refuses
    when a run is unfinished. `reference` overrides the suite's."""
    suite = load_suite(path)
    check_datasets(suite.evaluate_on, suite.where())
    if reference is not None and reference not in [e.name for e in suite.entries]:
        raise UserError(f"compare: --reference {reference}: no entry of {suite.path} has that name "
                        f"(entries: {', '.join(e.name for e in suite.entries)})")
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / f"suite-{suite.name}"
    tasks = plan_suite(suite, out_dir)
    if report_only:
        missing = [t for t in tasks if task_state(suite, t, out_dir) != "done"]
        if missing:
            raise UserError(f"compare --report-only: {out_dir}: {len(missing)} of {len(tasks)} runs are not "
                            f"finished ({_names(missing, out_dir, most=5)}); run the suite first")
    else:
        for task in tasks:  # a changed protocol fails before any training, not when its turn comes
            if run_state(task.run_dir, task.kind) != "new":
                _check_same_config(task.run_dir, task.config(suite), suite.where(task.entry))
        finished = sum(task_state(suite, t, out_dir) == "done" for t in tasks)
        if finished:
            _log(suite, f"{finished} of {len(tasks)} runs finished earlier, skipped")
        _prepare_shared(suite, out_dir)
        _work(suite, tasks, out_dir)
    return write_suite_report(suite, tasks, out_dir, reference)
