"""One-shot scores: how well a genotype does *inside* the supernet a search trained.

A search trains one supernet; whether its weights rank sub-architectures the way training them
alone would is an open question (Yu et al., ICLR 2020, "Evaluating the search phase of neural
architecture search"), and α magnitude need not reflect what an op contributes (Wang et al.,
ICLR 2021, "Rethinking architecture selection in differentiable NAS", DARTS-PT). This module
gives the measurements both questions need:

- :func:`oneshot_score`: validation Dice and loss of the supernet restricted to a genotype.
  Every cell gets a :class:`nas.cell.CellMask` from the genotype's live edges and blocks (after
  the same pruning :class:`nas.models.genotype_net.GenotypeNet` applies): each node's softmax is
  the *search's own* node-level softmax renormalised over the kept (input, op) pairs, the SSB
  softmax renormalised over the kept nodes, the CSB gates of kept nodes (others 0). The supernet's
  current α are used rather than the genotype's stored weights, so a searched genotype and random
  controls (whose stored weights are placeholders, see :func:`nas.discretize.random_genotype`) are
  weighted by the same trained α; for a genotype discretized from the run these are the stored
  weights up to rounding. An ``absent`` cell (or one with no live block) outputs zeros, which the
  decoder's convolution treats exactly as GenotypeNet treats a missing cell: its input channels
  contribute nothing. BatchNorm running statistics are then re-estimated for that sub-network
  (reset, cumulative average, ``bn_batches`` batches of the run's training images, unaugmented,
  in split order, no gradients), and the validation split is scored at network input size.
- :func:`alpha_score`: the genotype's score by the final α alone: the mean over its live kept
  (input, op) pairs of ``log w``, ``w`` the pair's full node-level softmax weight (blocks not
  counted). A genotype with no live pair scores ``-inf``.
- :func:`perturbation_discretize`: the ``perturbation`` discretize policy (DARTS-PT without
  fine-tuning; see docs/method.md, "Selection by perturbation").

Everything is deterministic given the run folder (fixed batches, no augmentation, no sampling).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from nas.cell import CellMask
from nas.errors import UserError
from nas.genotype import Backbone, CellGenotype, Genotype, load_genotype
from nas.search_space import SearchSpace
from nas.skip_grid import cell_name

GenotypeLike = Union[Genotype, str, os.PathLike]
Progress = Optional[Callable[[], None]]


@dataclass
class OneShotScore:
    """A genotype's one-shot score: mean validation ``dice`` and ``loss`` (the search's loss) over
    ``n_images`` validation images, at network input size, after BN re-estimation."""

    dice: float
    loss: float
    n_images: int


# ----------------------------------------------------------------------------- masks
def genotype_masks(genotype: Genotype, space: SearchSpace,
                   device: torch.device | str = "cpu") -> dict[str, CellMask]:
    """Per cell of ``space`` the :class:`~nas.cell.CellMask` of the genotype's live edges and
    block nodes (a cell the genotype lists as ``absent`` keeps nothing)."""
    check_genotype_fits(genotype, space)
    masks = {}
    for enc, dec in space.skips:
        name = cell_name(enc, dec)
        masks[name] = cell_mask(genotype.cells.get(name, CellGenotype.absent()), space, device)
    return masks


def cell_mask(cell: CellGenotype, space: SearchSpace, device: torch.device | str = "cpu") -> CellMask:
    """The mask of one cell genotype: its live edges (after pruning, as GenotypeNet builds it)
    and its live SSB/CSB nodes."""
    mask = CellMask.full(space.nodes, len(space.ops), device)
    for t in (*mask.nodes, mask.ssb, mask.csb):
        t.zero_()
    edges, ssb_nodes, csb_nodes = cell.live()
    for e in edges:
        mask.nodes[e.to - 1][e.from_, space.ops.index(e.op)] = True
    for n in ssb_nodes:
        mask.ssb[n - 1] = True
    for n in csb_nodes:
        mask.csb[n - 1] = True
    return mask


def check_genotype_fits(genotype: Genotype, space: SearchSpace, where: str = "genotype") -> None:
    """One-line :class:`UserError` unless ``genotype`` is a genotype of ``space`` (same backbone,
    ops of the space, cells of the space)."""
    if Backbone.from_space(space).to_dict() != genotype.backbone.to_dict():
        raise UserError(f"{where}: backbone differs from the run's search space '{space.name}' "
                        f"(genotype of '{genotype.search_space}')")
    skips = {cell_name(e, d) for e, d in space.skips}
    for name, cell in genotype.cells.items():
        if name not in skips:
            raise UserError(f"{where}: cells.{name}: not a skip of the run's search space '{space.name}'")
        for e in cell.edges:
            if e.op not in space.ops:
                raise UserError(f"{where}: cells.{name}: op {e.op} is not in search space '{space.name}'")


@contextlib.contextmanager
def restricted(model: nn.Module, masks: Mapping[str, Optional[CellMask]]) -> Iterator[nn.Module]:
    """Within the block, every cell of the supernet ``model`` named in ``masks`` computes only its
    mask's pairs and nodes (see :class:`nas.cell.CellMask`); the previous masks come back after."""
    previous = {name: cell.mask for name, cell in model.cells.items()}
    try:
        for name, mask in masks.items():
            model.cells[name].mask = mask
        yield model
    finally:
        for name, mask in previous.items():
            model.cells[name].mask = mask


# ----------------------------------------------------------------------------- batch norm
@torch.no_grad()
def reestimate_batch_norm(model: nn.Module, images: Sequence[torch.Tensor], to_device: Callable) -> int:
    """Reset every BatchNorm's running statistics and recompute them as the plain average over
    ``images`` (batches; momentum None) in training mode without gradients; returns the number
    of batches. The model is left in eval mode with its BatchNorm momenta as they were."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for x in images:
            model(to_device(x))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(images)


# ----------------------------------------------------------------------------- a search run
class OneShotRun:
    """A search run's trained supernet (``checkpoints/last.pt``: weights and α), its search space,
    its BN batches (training split) and validation batches, loaded once to score many genotypes.

    Args:
        run_dir: a folder written by ``nas search``.
        bn_batches: training batches (``train.batch_size``) for BN re-estimation (>= 1).
        threads: CPU threads for torch (default: the run's ``run.threads``).
        val_images: score on the first N validation images only (default all).
        overrides: ``--set`` texts for ``data.*``, ``run.*`` and ``train.eval_batch_size`` keys.
    """

    def __init__(self, run_dir: str | os.PathLike, *, bn_batches: int = 8, threads: Optional[int] = None,
                 val_images: Optional[int] = None, overrides: Sequence[str] = ()) -> None:
        from nas.data import build_data
        from nas.data.dataset import SegmentationDataset
        from nas.discretize import alpha_state_from_state_dict, run_search_space
        from nas.loop import checkpoint_kind, checkpoint_path, load_checkpoint
        from nas.losses import build_loss
        from nas.predict import run_config
        from nas.runtime import setup_runtime
        from nas.session import data_loader
        from nas.supernet import Supernet

        for key, value in (("bn_batches", bn_batches), ("val_images", val_images), ("threads", threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserError(f"{key} must be an integer >= 1, got {value!r}")
        self.run_dir = run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: run folder not found")
        ckpt_path = checkpoint_path(run_dir)
        ckpt = load_checkpoint(ckpt_path)
        if checkpoint_kind(ckpt) != "search":
            raise UserError(f"{ckpt_path}: not a checkpoint of nas search; one-shot scores need a search run")
        self.space = run_search_space(run_dir, ckpt)
        cfg, _ = run_config(run_dir, overrides, "rank")
        if threads is not None:
            cfg.run.threads = threads
        self.cfg = cfg
        self.rt = rt = setup_runtime(cfg.run)
        self.alpha_state = alpha_state_from_state_dict(ckpt["model"], str(ckpt_path))
        model = Supernet(self.space)
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise UserError(f"{ckpt_path}: weights do not fit search space '{self.space.name}' "
                            f"({str(exc).splitlines()[0]})") from None
        self.model = model.to(rt.device).eval()
        self.epoch = (ckpt.get("loop") or {}).get("epoch")
        self.loss_fn = build_loss(cfg.train.loss, cfg.train.bce_pos_weight)

        splits = ckpt.get("splits")
        if splits is None:
            from nas.data import read_splits

            path = run_dir / "splits.json"
            if not path.is_file():
                raise UserError(f"{path}: missing; the run's data split is needed for one-shot scores")
            splits = read_splits(path)
        data = build_data(cfg, "search", splits=splits)
        if len(data.val) == 0:
            raise UserError(f"{run_dir}: the run's validation split is empty; one-shot scores need validation "
                            "images (search with a val fraction > 0 in data.split)")
        val = data.val
        if val_images is not None and val_images < len(val):
            val = SegmentationDataset(val.store, val.indices[:val_images], None, val.seed, val.layout)
        self.n_images = len(val)
        self.val_loader = data_loader(val, cfg, rt.local(), cfg.train.eval_batch_size, train=False)[0]
        train = data.train  # unaugmented, in split order: the same batches every time
        plain = SegmentationDataset(train.store, train.indices, None, train.seed, train.layout)
        loader = data_loader(plain, cfg, rt.local(), cfg.train.batch_size, train=False)[0]
        self.bn_images: list[torch.Tensor] = []
        for image, _ in loader:
            if len(self.bn_images) == bn_batches:
                break
            self.bn_images.append(image)

    def masks(self, genotype: GenotypeLike) -> dict[str, CellMask]:
        """The cell masks of ``genotype`` (a :class:`Genotype` or a genotype file) on this run."""
        g = as_genotype(genotype)
        return genotype_masks(g, self.space, self.rt.device)

    def full_masks(self) -> dict[str, CellMask]:
        """Masks that keep everything (the whole supernet), to be narrowed in place."""
        return {name: CellMask.full(self.space.nodes, len(self.space.ops), self.rt.device) for name in self.model.cells}

    def reestimate(self, masks: Mapping[str, Optional[CellMask]]) -> None:
        """Re-estimate BatchNorm statistics of the supernet restricted to ``masks``."""
        with restricted(self.model, masks):
            reestimate_batch_norm(self.model, self.bn_images, self.rt.to_device)

    def evaluate(self, masks: Mapping[str, Optional[CellMask]]) -> OneShotScore:
        """Validation Dice and loss of the supernet restricted to ``masks``, with the BatchNorm
        statistics as they are (call :meth:`reestimate` first)."""
        from nas.evaluation import evaluate_loader

        with restricted(self.model, masks):
            result = evaluate_loader(self.model, self.val_loader, self.rt, self.loss_fn)
        return OneShotScore(dice=float(result.summary["dice"]), loss=float(result.summary["loss"]),
                            n_images=self.n_images)

    def score(self, genotype: GenotypeLike) -> OneShotScore:
        """One-shot score of ``genotype``: restrict, re-estimate BatchNorm, evaluate."""
        masks = self.masks(genotype)
        self.reestimate(masks)
        return self.evaluate(masks)


def as_genotype(genotype: GenotypeLike) -> Genotype:
    """A :class:`Genotype` as is, or the genotype file at a path (validated)."""
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, (str, os.PathLike)):
        return load_genotype(Path(genotype))
    raise TypeError(f"genotype must be a Genotype or a path, got {type(genotype).__name__}")


def oneshot_score(run_dir: str | os.PathLike, genotype: GenotypeLike, *, bn_batches: int = 8,
                  threads: Optional[int] = None) -> OneShotScore:
    """One-shot validation score of ``genotype`` in the supernet search run ``run_dir`` trained
    (see the module docstring). To score several genotypes, build one :class:`OneShotRun`."""
    g = as_genotype(genotype)
    return OneShotRun(run_dir, bn_batches=bn_batches, threads=threads).score(g)


def alpha_score(run_dir: str | os.PathLike, genotype: GenotypeLike) -> float:
    """Mean over the genotype's live kept (input, op) pairs of ``log`` of the pair's node-level
    softmax weight under the run's final α (``checkpoints/last.pt``); ``-inf`` without pairs."""
    from nas.discretize import load_run_alphas

    found = load_run_alphas(run_dir)
    return alpha_score_of(found.alpha_state, found.space, as_genotype(genotype))


def alpha_score_of(alpha_state: Mapping[str, Mapping[str, torch.Tensor]], space: SearchSpace,
                   genotype: Genotype) -> float:
    """:func:`alpha_score` from α already loaded (``cell → {node1.., ssb, csb}``)."""
    from nas.discretize import cell_weights

    check_genotype_fits(genotype, space)
    logs: list[float] = []
    for name, cell in genotype.cells.items():
        weights = cell_weights(alpha_state[name], space)
        for e in cell.live()[0]:
            logs.append(math.log(float(weights[f"node{e.to}"][e.from_, space.ops.index(e.op)])))
    return sum(logs) / len(logs) if logs else -math.inf


# ----------------------------------------------------------------------------- perturbation
def perturbation_pairs(run: OneShotRun, k: int, progress: Progress = None) -> dict[str, dict[int, list[tuple[int, int]]]]:
    """Per cell and node the ``k`` (input, op index) pairs whose removal lowers validation Dice the
    most (DARTS-PT's selection, without its fine-tuning).

    Cells are visited in search-space order, nodes 1..N. BatchNorm statistics are re-estimated on
    the full supernet before the first removal and again after each node is decided; within a
    node, each non-``zero`` pair is removed alone (its mask entry cleared, the rest of the node,
    ``zero`` included as the search trained it, renormalised) and the validation split scored. The ``k`` pairs with the lowest
    Dice without them are kept (ties: higher node weight, then input, then op order) and the
    node is narrowed to them before the next node is visited, so later decisions see the
    earlier ones. A node with at most ``k`` candidates keeps them all without evaluations.
    Cost: one evaluation per candidate pair (see :func:`perturbation_cost`).
    """
    from nas.discretize import cell_weights

    space = run.space
    masks = run.full_masks()  # the supernet as trained, `zero` included until a node is decided
    zero = {o for o, name in enumerate(space.ops) if name == "zero"}
    run.reestimate(masks)
    chosen: dict[str, dict[int, list[tuple[int, int]]]] = {}
    for enc, dec in space.skips:
        name = cell_name(enc, dec)
        weights = cell_weights(run.alpha_state[name], space)
        chosen[name] = {}
        for node in range(1, space.nodes + 1):
            keep = masks[name].nodes[node - 1]
            candidates = [(j, o) for j, o in keep.nonzero().tolist() if o not in zero]
            if len(candidates) <= k:
                chosen[name][node] = candidates
                continue
            dice: dict[tuple[int, int], float] = {}
            for pair in candidates:
                keep[pair] = False
                dice[pair] = run.evaluate(masks).dice
                keep[pair] = True
                if progress is not None:
                    progress()
            w = weights[f"node{node}"]
            ranked = sorted(candidates, key=lambda p: (dice[p], -float(w[p]), p[0], p[1]))
            chosen[name][node] = ranked[:k]
            keep.zero_()
            for pair in ranked[:k]:
                keep[pair] = True
            run.reestimate(masks)
    return chosen


def perturbation_cost(space: SearchSpace, k: int) -> int:
    """Number of validation evaluations :func:`perturbation_pairs` makes: per cell and node, the
    non-``zero`` pairs of the node, unless there are at most ``k`` of them."""
    n_ops = sum(1 for op in space.ops if op != "zero")
    per_cell = sum(i * n_ops for i in range(1, space.nodes + 1) if i * n_ops > k)
    return per_cell * len(space.skips)


def perturbation_discretize(run_dir: str | os.PathLike, k: int = 3, *, bn_batches: int = 8,
                            val_images: Optional[int] = None, threads: Optional[int] = None,
                            overrides: Sequence[str] = (), progress: Progress = None,
                            run: Optional[OneShotRun] = None) -> Genotype:
    """The ``perturbation`` policy's genotype of a search run: pairs by
    :func:`perturbation_pairs`, blocks by the thesis rule on α (nodes at or above the block
    mean), then the usual pruning and fallback (:func:`nas.discretize.cell_from_pairs`); edge
    weights are the pairs' node-level α weights, as for every policy."""
    from nas.discretize import cell_from_pairs, cell_weights, check_policy, policy_settings

    check_policy("perturbation", k, 0.9)
    if run is None:
        run = OneShotRun(run_dir, bn_batches=bn_batches, threads=threads, val_images=val_images,
                         overrides=overrides)
    pairs = perturbation_pairs(run, k, progress)
    space = run.space
    cells = {}
    for enc, dec in space.skips:
        name = cell_name(enc, dec)
        cells[name] = cell_from_pairs(cell_weights(run.alpha_state[name], space), space, pairs[name], name)
    source: dict[str, Any] = {"run": str(run.run_dir)}
    if run.epoch is not None:
        source["epoch"] = run.epoch
    source.update(policy_settings("perturbation", k, 0.9))
    source.update({"bn_batches": len(run.bn_images), "val_images": run.n_images})
    return Genotype(search_space=space.name, backbone=Backbone.from_space(space), source=source, cells=cells)


__all__ = ["OneShotRun", "OneShotScore", "alpha_score", "alpha_score_of", "genotype_masks", "oneshot_score",
           "perturbation_cost", "perturbation_discretize", "perturbation_pairs", "reestimate_batch_norm",
           "restricted"]
