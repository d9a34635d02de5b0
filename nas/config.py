"""Typed experiment configuration: YAML files plus `--set a.b=c` overrides, validated up front.

Every field is a dataclass attribute with a type hint and, where it matters, a range check, so a
typo or a wrong value is reported in one line that names the file and the dotted key before any
work starts.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml

from nas.errors import UserError
from nas.textfiles import read_yaml


# ----------------------------------------------------------------------------- schema
@dataclass
class SaltPepperConfig:
    enabled: bool = True
    amount: float = 0.005


@dataclass
class CropConfig:
    """Random crop (side = a random fraction of the image side) then resize back."""

    enabled: bool = True
    min_fraction: float = 0.8


@dataclass
class FlipConfig:
    enabled: bool = True


@dataclass
class RotateConfig:
    enabled: bool = True
    max_degrees: float = 360.0


@dataclass
class ScaleConfig:
    enabled: bool = True
    min: float = 0.8
    max: float = 2.0


@dataclass
class BrightnessContrastConfig:
    """cv2.convertScaleAbs(image, alpha, beta)."""

    enabled: bool = True
    alpha: list[float] = field(default_factory=lambda: [0.7, 1.3])
    beta: list[float] = field(default_factory=lambda: [-75.0, 75.0])


@dataclass
class AugmentConfig:
    enabled: bool = True
    probability: float = 0.5
    salt_pepper: SaltPepperConfig = field(default_factory=SaltPepperConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    flip: FlipConfig = field(default_factory=FlipConfig)
    rotate: RotateConfig = field(default_factory=RotateConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    brightness_contrast: BrightnessContrastConfig = field(default_factory=BrightnessContrastConfig)


@dataclass
class DataConfig:
    root: Optional[str] = None
    layout: str = "auto"
    image_size: int = 64
    limit: Optional[int] = None
    split: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_seed: Optional[int] = None
    groups: Optional[str] = None
    official_split: bool = True
    on_bad: str = "error"
    cache: str = "memory"
    cache_dir: Optional[str] = None
    synthetic_n: int = 96
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainConfig:
    epochs: int = 2
    batch_size: int = 8
    loss: str = "bce"
    bce_pos_weight: Optional[float] = None
    optimizer: str = "sgd"
    lr: float = 0.025
    lr_min: float = 0.003
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 3e-4
    scheduler: str = "cosine"
    grad_clip: float = 5.0
    early_stop_patience: Optional[int] = None
    eval_batch_size: int = 16


@dataclass
class RetrainConfig:
    """Overrides of `train.*` used by `nas retrain` only (null = same as train.*).

    One config file can then hold a whole experiment: the search's weight optimiser in `train`
    and the retrain's in `retrain` (the thesis used SGD for the search, RAdam for the retrain).
    """

    epochs: Optional[int] = None
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    lr_min: Optional[float] = None
    betas: Optional[list[float]] = None
    weight_decay: Optional[float] = None
    loss: Optional[str] = None
    batch_size: Optional[int] = None


@dataclass
class BetaDecayConfig:
    enabled: bool = True
    mode: str = "centred"
    lambda_start: float = 0.125
    lambda_step: float = 0.125
    lambda_max: float = 3.75
    include_blocks: bool = False


@dataclass
class SearchConfig:
    space: str = "unet_fullscale"
    order: int = 1
    arch_optimizer: str = "adam"
    arch_lr: float = 3e-3
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    arch_weight_decay: float = 0.0
    warmup_epochs: int = 0
    alpha_init: float = 1e-3
    beta_decay: BetaDecayConfig = field(default_factory=BetaDecayConfig)


@dataclass
class ModelConfig:
    name: Optional[str] = None
    genotype: Optional[str] = None
    width: Optional[int] = None
    width_multiplier: float = 2.0
    out_channels: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiscretizeConfig:
    policy: str = "thesis"
    k: int = 3
    threshold: float = 0.9


@dataclass
class LogConfig:
    alpha_every: int = 10
    plots: bool = True
    progress: bool = True


@dataclass
class RunConfig:
    seed: int = 2024
    device: str = "auto"
    workers: int = 0
    threads: Optional[int] = None
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = True
    distributed: str = "auto"
    sync_bn: bool = False
    lr_scaling: str = "none"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    discretize: DiscretizeConfig = field(default_factory=DiscretizeConfig)
    log: LogConfig = field(default_factory=LogConfig)
    run: RunConfig = field(default_factory=RunConfig)


# Allowed values and ranges: dotted key -> ("choice", [...]) | ("range", lo, hi) (inclusive, None = open).
CHOICES: dict[str, list[Any]] = {
    "data.layout": ["auto", "isic2016", "isic2017", "isic2018", "ham10000", "ph2", "folder", "synthetic"],
    "data.on_bad": ["error", "skip"],
    "data.cache": ["memory", "disk", "none"],
    "train.loss": ["bce", "dice", "hybrid"],
    "train.optimizer": ["sgd", "radam", "adam", "adamw"],
    "train.scheduler": ["cosine", "none"],
    "retrain.optimizer": ["sgd", "radam", "adam", "adamw", None],
    "retrain.loss": ["bce", "dice", "hybrid", None],
    "search.order": [1, 2],
    "search.arch_optimizer": ["adam", "radam"],
    "search.beta_decay.mode": ["gradient", "centred", "decoupled"],
    "discretize.policy": ["thesis", "darts", "threshold", "perturbation"],
    "run.distributed": ["auto", "true", "false"],
    "run.lr_scaling": ["none", "linear", "sqrt"],
}
RANGES: dict[str, tuple[Optional[float], Optional[float]]] = {
    "data.image_size": (16, 4096),
    "data.limit": (1, None),
    "data.split_seed": (0, 2**32 - 1),
    "data.synthetic_n": (4, None),
    "data.augment.probability": (0.0, 1.0),
    "data.augment.salt_pepper.amount": (0.0, 1.0),
    "data.augment.crop.min_fraction": (0.05, 1.0),
    "data.augment.rotate.max_degrees": (0.0, 360.0),
    "data.augment.scale.min": (0.01, None),
    "data.augment.scale.max": (0.01, None),
    "train.epochs": (1, None),
    "train.batch_size": (1, None),
    "train.eval_batch_size": (1, None),
    "train.lr": (0.0, None),
    "train.lr_min": (0.0, None),
    "train.momentum": (0.0, 1.0),
    "train.weight_decay": (0.0, None),
    "train.grad_clip": (0.0, None),
    "train.early_stop_patience": (1, None),
    "train.bce_pos_weight": (0.0, None),
    "retrain.epochs": (1, None),
    "retrain.lr": (0.0, None),
    "retrain.lr_min": (0.0, None),
    "retrain.weight_decay": (0.0, None),
    "retrain.batch_size": (1, None),
    "search.arch_lr": (0.0, None),
    "search.arch_weight_decay": (0.0, None),
    "search.warmup_epochs": (0, None),
    "search.alpha_init": (0.0, None),
    "search.beta_decay.lambda_start": (0.0, None),
    "search.beta_decay.lambda_step": (0.0, None),
    "search.beta_decay.lambda_max": (0.0, None),
    "model.width": (1, None),
    "model.width_multiplier": (0.01, None),
    "model.out_channels": (1, 2),
    "discretize.k": (1, None),
    "discretize.threshold": (0.0, 1.0),
    "log.alpha_every": (1, None),
    "run.workers": (0, None),
    "run.threads": (1, 1024),
}
LENGTHS: dict[str, int] = {
    "data.split": 3,
    "data.augment.brightness_contrast.alpha": 2,
    "data.augment.brightness_contrast.beta": 2,
    "train.betas": 2,
    "retrain.betas": 2,
    "search.arch_betas": 2,
}
# Half-open [low, high) bounds of every item of a list key (an Adam beta of 1 never forgets).
ITEM_RANGES: dict[str, tuple[float, float]] = {
    "train.betas": (0.0, 1.0),
    "retrain.betas": (0.0, 1.0),
    "search.arch_betas": (0.0, 1.0),
}
# Keys holding a file or folder: an empty value (an unset shell variable) is refused, never "here".
PATH_KEYS = ("data.root", "data.groups", "data.cache_dir", "model.genotype", "search.space")


DESCRIPTIONS: dict[str, str] = {
    "data.root": "dataset folder; null = built-in synthetic lesions",
    "data.layout": "folder layout; auto-detected from data.root unless forced",
    "data.image_size": "side of the square network input: in training the centre crop is resized to it, in evaluation and prediction the whole image",
    "data.limit": "use at most N image/mask pairs (deterministic subset of whole groups, see data.groups)",
    "data.split": "train/val/test fractions of the pairs, met as closely as whole groups allow (ignored when an official split is used)",
    "data.split_seed": "seed of the train/val/test split; null = run.seed (each seed its own split). Set it to keep one fixed split, e.g. one test set, across training seeds",
    "data.groups": "images that must stay in one split (a lesion's photos): null = the dataset's own table (HAM10000_metadata.csv, lesion_id) when present, else one group per image; none = one group per image; else a CSV with columns image_id (or id) and lesion_id (or group)",
    "data.official_split": "use the dataset's own train/val/test folders when its layout has them",
    "data.on_bad": "error: stop and list bad files; skip: leave them out with a counted warning",
    "data.cache": "where preprocessed arrays are kept so later epochs skip JPEG decoding",
    "data.cache_dir": "folder of the on-disk cache (default ~/.cache/skipnas)",
    "data.synthetic_n": "number of synthetic images when data.root is null",
    "data.augment.enabled": "on-the-fly augmentation of training images (never val/test)",
    "data.augment.probability": "probability each enabled transform is applied to an image",
    "train.epochs": "epochs (search epochs for nas search; retrain epochs unless retrain.epochs is set)",
    "train.batch_size": "per-process batch; global batch = batch_size x world size",
    "train.loss": "bce (with logits), dice (soft) or hybrid (Dice + class-weighted BCE)",
    "train.bce_pos_weight": "weight of lesion pixels in BCE; null = 1 (hybrid: from class frequency)",
    "train.optimizer": "weight optimiser",
    "train.lr": "initial learning rate of the weights",
    "train.lr_min": "final learning rate of the cosine schedule",
    "train.weight_decay": "weight decay (decoupled for radam/adamw)",
    "train.grad_clip": "clip the weight-gradient norm (0 = off)",
    "train.early_stop_patience": "stop after N epochs without a better validation Dice (null = off)",
    "search.space": "search-space name (search_spaces/NAME.yaml) or path to a YAML file",
    "search.order": "1 = first-order DARTS, 2 = unrolled second-order step",
    "search.arch_optimizer": "optimiser of the architecture parameters (adam, or radam as in the thesis)",
    "search.arch_lr": "learning rate of the architecture parameters",
    "search.arch_betas": "betas of the architecture optimiser",
    "search.warmup_epochs": "epochs with alpha frozen (weights only) before the bilevel search starts",
    "search.alpha_init": "alpha start as alpha_init x N(0, 1) (0 = all equal)",
    "search.beta_decay.enabled": "beta-decay regularisation of alpha (Ye et al. 2022), lambda x mean logsumexp(alpha group)",
    "search.beta_decay.mode": "gradient: add its gradient to the alpha loss (thesis); centred: only the part that changes the softmax; decoupled: a step outside the optimiser's normalisation",
    "search.beta_decay.lambda_start": "lambda at epoch 1",
    "search.beta_decay.lambda_step": "lambda increase per epoch",
    "search.beta_decay.lambda_max": "lambda cap",
    "search.beta_decay.include_blocks": "also regularise the SSB/CSB alpha groups",
    "model.name": "baseline model for nas retrain (nas retrain --list-models)",
    "model.genotype": "genotype.yaml for nas retrain",
    "model.width": "base channel width of a baseline (null = the paper's)",
    "model.width_multiplier": "channel multiplier of a genotype network over its search space (thesis 2)",
    "model.out_channels": "1 (lesion) or 2 (lesion, background) output channels",
    "model.options": "extra keyword arguments for the model constructor",
    "discretize.policy": "thesis (top-k per node), darts (top-2 edges per node), threshold or perturbation "
                         "(top-k per node by Dice lost when removed from the trained supernet)",
    "discretize.k": "(input, op) pairs kept per node by the thesis and perturbation policies",
    "discretize.threshold": "cumulative weight kept per node by the threshold policy",
    "log.alpha_every": "append every alpha to alphas.csv every N steps (and at each epoch end)",
    "log.plots": "write the standard plots into RUN/plots at the end",
    "log.progress": "show the live progress bar",
    "run.seed": "seed of splits (unless data.split_seed), initialisation, shuffling and augmentation",
    "run.device": "auto (CUDA when present), cpu, cuda, cuda:N",
    "run.workers": "DataLoader worker processes",
    "run.threads": "CPU threads for torch (null = torch default)",
    "run.bf16": "bfloat16 autocast of forward passes (CUDA, or CPU; see troubleshooting.md)",
    "run.channels_last": "channels_last memory format",
    "run.compile": "torch.compile the model (search and retrain)",
    "run.deterministic": "deterministic algorithms (bit-for-bit repeatable on CPU)",
    "run.distributed": "auto: use torch.distributed when started by torchrun; false: force one process",
    "run.sync_bn": "synchronise BatchNorm statistics across ranks",
    "run.lr_scaling": "scale learning rates with the world size: none, linear or sqrt",
}


# ----------------------------------------------------------------------------- parsing
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin is dict:
        return "a mapping"
    return {int: "int", float: "number", bool: "bool (true/false)", str: "string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Check `value` against type hint `tp`; ints are accepted for floats. Raises ValueError."""
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        try:
            return _coerce(value, inner)
        except ValueError as exc:  # `expected a string, got 3` -> `expected a string or null, got 3`
            raise ValueError(str(exc).replace(", got ", " or null, got ", 1)) from None
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item_tp) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        if typing.get_args(tp)[0] is str and not all(isinstance(k, str) for k in value):
            raise ValueError(f"expected a mapping with names as keys, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected an int, got {value!r}")
    if tp is float:
        number: Optional[float] = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as text
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ValueError(f"expected a number, got {value!r}")
        if not math.isfinite(number):  # NaN passes every `<` check; inf makes a useless run
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML reads `false` as a bool: keep the word for choice keys
            return "true" if value else "false"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    raise ValueError(f"unsupported type {tp}")  # pragma: no cover


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _range_text(key: str, integer: bool) -> str:
    """What RANGES[key] allows, in words: `1 or 2`, `a positive int`, `a number in [0.0, 1.0]`."""
    lo, hi = RANGES[key]
    kind, article = ("int", "an") if integer else ("number", "a")
    if integer and lo is not None and hi is not None and hi - lo <= 3:
        values = [str(v) for v in range(int(lo), int(hi) + 1)]
        return ", ".join(values[:-1]) + " or " + values[-1]
    if lo is not None and hi is not None:
        return f"{article} {kind} in [{lo}, {hi}]"
    if lo is not None:
        return "a positive int" if (integer and lo == 1) else f"{article} {kind} >= {lo}"
    return f"{article} {kind} <= {hi}"


def _check_value(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        opts = ", ".join(str(c) for c in CHOICES[key])
        raise ValueError(f"expected one of {opts}, got {value!r}")
    if key in RANGES and value is not None:
        lo, hi = RANGES[key]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"expected {_range_text(key, isinstance(value, int))}, got {value!r}")
    if key in LENGTHS and value is not None and len(value) != LENGTHS[key]:
        raise ValueError(f"expected a list of {LENGTHS[key]} values, got {value!r}")
    if key in ITEM_RANGES and value is not None:
        lo, hi = ITEM_RANGES[key]
        if any(not lo <= v < hi for v in value):
            raise ValueError(f"expected every value in [{_fmt(lo)}, {_fmt(hi)}), got {value!r}")
    if isinstance(value, str) and not value.strip():
        what = "a path" if key in PATH_KEYS else "a value"
        raise ValueError(f"expected {what}, got an empty string (an unset shell variable?); "
                         "leave the key out (or set it to null where allowed) to use the default")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """Recursively build dataclass `cls` from a mapping, validating every key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {prefix or '<top level>'}: expected a mapping, got {raw!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            known = ", ".join(sorted(names))
            raise UserError(f"{source}: {dotted}: unknown key (known here: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, dotted, source)
            continue
        try:
            coerced = _coerce(value, tp)
            _check_value(dotted, coerced)
        except ValueError as exc:
            msg = str(exc)
            if msg.startswith(("expected an int,", "expected an int or null,")) and dotted in RANGES:
                null = " or null" if "or null" in msg else ""  # say which ints
                msg = f"expected {_range_text(dotted, True)}{null}, got {value!r}"
            raise UserError(f"{source}: {dotted}: {msg}") from None
        kwargs[key] = coerced
    return cls(**kwargs)


def _cross_failure(cfg: Config) -> Optional[tuple[tuple[str, ...], str]]:
    """The first rule that ties several keys together and fails: (the keys, `key: message`)."""
    split = cfg.data.split
    if any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6 or split[0] <= 0:
        return ("data.split",), (f"data.split: expected three non-negative fractions summing to 1 "
                                 f"with a positive train share, got {split}")
    if cfg.data.image_size % 16:
        return ("data.image_size",), (f"data.image_size: expected a multiple of 16 (the U-Nets pool 4 times), "
                                      f"got {cfg.data.image_size}")
    sc = cfg.data.augment.scale
    if sc.min > sc.max:
        return ("data.augment.scale",), f"data.augment.scale: min {sc.min} is larger than max {sc.max}"
    bc = cfg.data.augment.brightness_contrast
    for name, (lo, hi) in (("alpha", bc.alpha), ("beta", bc.beta)):
        if lo > hi:
            return ((f"data.augment.brightness_contrast.{name}",),
                    f"data.augment.brightness_contrast.{name}: expected [low, high] with low <= high, got {[lo, hi]}")
    if bc.alpha[0] < 0:
        return (("data.augment.brightness_contrast.alpha",),
                f"data.augment.brightness_contrast.alpha: expected contrast factors >= 0, got {bc.alpha}")
    if cfg.train.lr_min > cfg.train.lr:
        return ("train.lr", "train.lr_min"), (f"train.lr_min: expected <= train.lr ({cfg.train.lr}), "
                                              f"got {cfg.train.lr_min}")
    rt = retrain_settings(cfg)
    if rt.lr_min > rt.lr:
        lr_from = "retrain.lr" if cfg.retrain.lr is not None else "train.lr"
        min_from = "retrain.lr_min" if cfg.retrain.lr_min is not None else "train.lr_min"
        return (("retrain.lr", "retrain.lr_min", "train.lr", "train.lr_min"),
                f"retrain.lr_min: the retrain's cosine floor ({rt.lr_min}, from {min_from}) is above its "
                f"learning rate ({rt.lr}, from {lr_from}); set retrain.lr_min <= {rt.lr}")
    return None


def _cross_checks(cfg: Config, source: str | Callable[[tuple[str, ...]], str]) -> None:
    """Rules between keys; `source` names the culprit, or maps the keys involved to it."""
    failure = _cross_failure(cfg)
    if failure is not None:
        keys, message = failure
        raise UserError(f"{source(keys) if callable(source) else source}: {message}")


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", value) with the value parsed as YAML (ints, floats, bools, lists, null)."""
    if "=" not in text:
        raise UserError(f"--set {text}: expected KEY=VALUE, e.g. --set data.image_size=128")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise UserError(f"--set {text}: empty key")
    if any(not part for part in key.split(".")):
        raise UserError(f"--set {text}: {key}: expected a dotted key such as data.image_size")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def _read_yaml(path: Path) -> dict:
    raw = read_yaml(path, "YAML config file")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections (data, train, ...) at the top level")
    return raw


def _config_chain(path: Path) -> list[tuple[Path, dict]]:
    """`path` and every file it `extends:` (each relative to the file naming it), farthest
    ancestor first, each without its `extends` key. A cycle is one error naming the chain."""
    chain: list[tuple[Path, dict]] = []
    seen: list[Path] = []
    current = path
    while True:
        raw = _read_yaml(current)
        seen.append(current.resolve())
        has_parent = "extends" in raw
        parent = raw.pop("extends", None)
        chain.append((current, raw))
        if not has_parent:
            return chain[::-1]
        if not isinstance(parent, str) or not parent.strip():
            raise UserError(f"{current}: extends: expected the path of a YAML config file "
                            f"(relative to this file), got {parent!r}")
        nxt = current.parent / parent
        if nxt.resolve() in seen:
            names = " -> ".join(str(p) for p, _ in chain)
            raise UserError(f"{path}: extends: cycle {names} -> {nxt}")
        if not nxt.exists():
            raise UserError(f"{current}: extends: {nxt}: config file not found")
        current = nxt


def _leaves(tree: dict, cls: type = Config, prefix: str = "") -> set[str]:
    """Dotted keys a (validated) raw config tree sets: its keys, down to the schema's leaves (a
    mapping value such as `model.options` is one leaf, however deep)."""
    hints = _hints(cls)
    out: set[str] = set()
    for k, v in tree.items():
        dotted = f"{prefix}.{k}" if prefix else str(k)
        tp = hints.get(k)
        if tp is not None and dataclasses.is_dataclass(tp) and isinstance(v, dict) and v:
            out |= _leaves(v, tp, dotted)
        else:
            out.add(dotted)
    return out


def _blamer(layers: list[tuple[str, set[str]]]) -> Callable[[tuple[str, ...]], str]:
    """keys -> the last layer (file or `--set`) that set any of them (or a section holding them)."""
    def blame(keys: tuple[str, ...]) -> str:
        for source, leaves in reversed(layers):
            for leaf in leaves:
                if any(leaf == k or leaf.startswith(k + ".") or k.startswith(leaf + ".") for k in keys):
                    return source
        return "defaults"

    return blame


def _merge(base: dict, extra: dict) -> dict:
    """`extra` over `base`, section by section. An empty section (`train:` with every line
    commented out reads as null) changes nothing; it used to wipe the section it extends."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif not (v is None and isinstance(out.get(k), dict)):
            out[k] = v
    return out


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None,
                base: Optional[dict] = None, base_source: str = "saved config") -> Config:
    """Build a validated Config from defaults <- `base` dict <- YAML file <- `--set` overrides.

    A YAML file may start with `extends: other.yaml` (resolved relative to the file; the other
    file may extend a third, and so on) to reuse settings. Every file is checked on its own, so
    an error names the file that holds the bad key; `--set` errors name the override; an error
    between keys (`train.lr_min` above `train.lr`) names the last file or override that set one
    of them. `base_source` names `base` in errors (e.g. a run's `config.yaml` when resuming).
    """
    tree: dict = {}
    layers: list[tuple[str, set[str]]] = []
    if base:
        _build(Config, base, "", base_source)
        tree = _merge(tree, base)
        layers.append((base_source, _leaves(base)))
    cfg: Optional[Config] = None
    if path is not None:
        for file, raw in _config_chain(Path(path)):
            _build(Config, raw, "", str(file))  # report a file's own errors against that file
            tree = _merge(tree, raw)
            layers.append((str(file), _leaves(raw)))
        cfg = _build(Config, tree, "", str(path))
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
        cfg = _build(Config, tree, "", f"--set {text}")  # name the override that broke it
        layers.append((f"--set {text}", {key}))
    if cfg is None:  # neither a file nor an override: defaults <- base
        cfg = _build(Config, tree, "", base_source if base else "defaults")
    _cross_checks(cfg, _blamer(layers))
    return cfg


def retrain_settings(cfg: Config) -> TrainConfig:
    """`train.*` with the non-null `retrain.*` overrides applied."""
    over = {k: v for k, v in dataclasses.asdict(cfg.retrain).items() if v is not None}
    return dataclasses.replace(cfg.train, **over)


def config_from_dict(tree: dict, source: str = "config") -> Config:
    """Rebuild a Config from a resolved dict (a run folder's `config.yaml`, a checkpoint)."""
    cfg = _build(Config, tree, "", source)
    _cross_checks(cfg, source)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def flat_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config mapping as ``{"section.key": value}`` (an empty mapping is one value), so
    that two configs can be compared key by key."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def iter_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, str, Any, str, str]]:
    """(dotted key, type name, default, allowed values, meaning) for every leaf, used by the config reference docs."""
    rows = []
    default_obj = cls()
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(iter_keys(tp, dotted))
            continue
        constraint = ""
        if dotted in CHOICES:
            constraint = "one of " + ", ".join(str(c) for c in CHOICES[dotted])
        elif dotted in RANGES:
            lo, hi = RANGES[dotted]
            constraint = f"range [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        elif dotted in ITEM_RANGES:
            lo, hi = ITEM_RANGES[dotted]
            constraint = f"each in [{lo}, {hi})"
        elif dotted in PATH_KEYS:
            constraint = "not empty"
        rows.append((dotted, _type_name(tp), getattr(default_obj, f.name), constraint,
                     DESCRIPTIONS.get(dotted, "")))
    return rows
