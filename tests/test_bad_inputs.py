"""Bad-input corpus: what a demanding user gets wrong, one parametrised test per family.

Every case drives the real CLI in-process (`nas.cli.main`) and asserts the promise of
docs/commands.md: the documented exit code (2 for bad input: config, files, split; 1 for bad data
files), exactly one `error:` line on stderr (bad data files under `data.on_bad: error` print the
documented list of files above it), no traceback, and nothing written or changed in the folder the
case runs in. Families: config files, `--set` overrides, data folders, genotype files, alphas.csv.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import yaml

from nas.cli import main
from test_data_fixtures import make_layout, tiny_pair, write
from test_genotype import tiny_genotype_dict

TINY = ["search.space=tiny", "data.image_size=32", "data.synthetic_n=8", "train.epochs=1", "train.batch_size=4",
        "train.eval_batch_size=8", "log.progress=false", "log.plots=false", "run.threads=1", "model.out_channels=1"]
SETS = [a for kv in TINY for a in ("--set", kv)]
LATIN1 = "# réglages pour l'expérience\n".encode("latin-1")  # valid Latin-1, invalid UTF-8


@dataclass
class Outcome:
    code: Optional[int]
    out: str
    err: str
    crash: Optional[BaseException]


def run_cli(argv: list[str], capsys) -> Outcome:
    """`nas ARGV` in this process; an exception escaping `main` is what a user sees as a traceback."""
    capsys.readouterr()
    crash = None
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001 - anything else is a traceback in the real CLI
        code, crash = None, exc
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err, crash)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a digest of its content (folders: 'dir')."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


# The run-folder code (nas/session.py) still writes RUN/config.yaml before it reads the data, so a
# split or data error found while loading leaves that one file; nothing else may appear.
STARTED_RUN_LEFTOVERS = {"out", "out/config.yaml"}


def check(outcome: Outcome, code: int, pattern: str, before: dict[str, str], after: dict[str, str],
          file_list: bool = False, leftovers: set[str] = frozenset()) -> None:
    assert outcome.crash is None, f"TRACEBACK: {type(outcome.crash).__name__}: {outcome.crash}"
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1 and lines[-1] == error_lines[0], f"expected one error: line last, got {lines}"
    if file_list:  # bad data files: the documented list above the error line
        assert all(re.match(r"^(\d+ data files? with problems under |  - )", line) for line in lines[:-1]), lines
    else:
        assert len(lines) == 1, f"expected exactly one line on stderr, got {lines}"
    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert outcome.code == code, f"exit {outcome.code}, expected {code}: {error_lines[0]}"
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= set(leftovers), f"written or changed: {sorted(changed - set(leftovers))}"


def run_case(tmp_path: Path, monkeypatch, capsys, argv: list[str], code: int, pattern: str, **kw) -> None:
    monkeypatch.chdir(tmp_path)  # a default `runs/...` folder would land here and be seen
    before = snapshot(tmp_path)
    outcome = run_cli(argv, capsys)
    check(outcome, code, pattern, before, snapshot(tmp_path), **kw)


# ============================================================================ config files
def _files(**files: str | bytes) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for name, content in files.items():
            path = d / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if content == "<dir>":
                path.mkdir()
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return setup


CONFIG_FILES = [
    ("latin1", _files(**{"x.yaml": LATIN1 + b"train:\n  epochs: 1\n"}), "not UTF-8 text .*byte 0xe9"),
    ("utf16", _files(**{"x.yaml": "train:\n  epochs: 1\n".encode("utf-16")}), "not UTF-8 text"),
    ("binary png", _files(**{"x.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}), "not UTF-8 text"),
    ("folder", _files(**{"x.yaml": "<dir>"}), r"x\.yaml: is a folder; expected a YAML config file"),
    ("missing", _files(), r"x\.yaml: YAML config file not found"),
    ("unclosed bracket", _files(**{"x.yaml": "train:\n  betas: [0.9, 0.99\n"}), r"not valid YAML \(line \d+"),
    ("tab indent", _files(**{"x.yaml": "train:\n\tepochs: 1\n"}), r"not valid YAML \(line 2"),
    ("duplicate section", _files(**{"x.yaml": "train:\n  epochs: 1\ntrain:\n  lr: 0.1\n"}),
     r"not valid YAML \(line 3: duplicate key 'train'\)"),
    ("duplicate key", _files(**{"x.yaml": "train:\n  lr: 0.1\n  lr: 0.2\n"}), r"duplicate key 'lr'"),
    ("top-level list", _files(**{"x.yaml": "- train\n- data\n"}), "expected a mapping of sections"),
    ("top-level scalar", _files(**{"x.yaml": "hello\n"}), "expected a mapping of sections"),
    ("section is a number", _files(**{"x.yaml": "train: 5\n"}), r"x\.yaml: train: expected a mapping, got 5"),
    ("unknown section", _files(**{"x.yaml": "trian:\n  epochs: 1\n"}), r"x\.yaml: trian: unknown key"),
    ("lr nan", _files(**{"x.yaml": "train:\n  lr: .nan\n"}), r"train\.lr: expected a finite number, got nan"),
    ("lr inf", _files(**{"x.yaml": "train:\n  lr: .inf\n"}), r"train\.lr: expected a finite number"),
    ("lr -inf", _files(**{"x.yaml": "train:\n  lr: -.inf\n"}), r"train\.lr: expected a finite number"),
    ("lr text nan", _files(**{"x.yaml": "train:\n  lr: nan\n"}), r"train\.lr: expected a finite number"),
    ("split nan", _files(**{"x.yaml": "data:\n  split: [.nan, 0.5, 0.5]\n"}), r"data\.split: expected a finite"),
    ("split two parts", _files(**{"x.yaml": "data:\n  split: [0.5, 0.5]\n"}), r"data\.split: expected a list of 3"),
    ("betas one", _files(**{"x.yaml": "train:\n  betas: [0.9, 1.0]\n"}), r"train\.betas: expected every value in \[0, 1\)"),
    ("arch betas negative", _files(**{"x.yaml": "search:\n  arch_betas: [-0.1, 0.9]\n"}), r"search\.arch_betas: expected every"),
    ("retrain betas", _files(**{"x.yaml": "retrain:\n  betas: [1.5, 0.9]\n"}), r"retrain\.betas: expected every"),
    ("out_channels 3", _files(**{"x.yaml": "model:\n  out_channels: 3\n"}), r"model\.out_channels: expected 1 or 2, got 3"),
    ("root empty", _files(**{"x.yaml": "data:\n  root: ''\n"}), r"data\.root: expected a path, got an empty string"),
    ("root blank", _files(**{"x.yaml": "data:\n  root: '   '\n"}), r"data\.root: expected a path"),
    ("lr_min above lr", _files(**{"x.yaml": "train:\n  lr: 0.001\n"}), r"^error: x\.yaml: train\.lr_min: expected <="),
    ("extends cycle", _files(**{"x.yaml": "extends: b.yaml\n", "b.yaml": "extends: x.yaml\n"}),
     r"x\.yaml: extends: cycle x\.yaml -> b\.yaml -> x\.yaml"),
    ("extends itself", _files(**{"x.yaml": "extends: ./x.yaml\n"}), r"extends: cycle x\.yaml -> x\.yaml"),
    ("extends long cycle", _files(**{"x.yaml": "extends: a/b.yaml\n", "a__b.yaml": "extends: ../c.yaml\n",
                                     "c.yaml": "extends: a/b.yaml\n"}), r"extends: cycle x\.yaml -> a/b\.yaml"),
    ("grandparent unknown key", _files(**{"x.yaml": "extends: p.yaml\n", "p.yaml": "extends: sub/g.yaml\n",
                                          "sub__g.yaml": "train:\n  lrr: 1\n"}),
     r"^error: sub/g\.yaml: train\.lrr: unknown key"),
    ("grandparent bad value", _files(**{"x.yaml": "extends: p.yaml\n", "p.yaml": "extends: g.yaml\n",
                                        "g.yaml": "train:\n  epochs: -1\n"}), r"^error: g\.yaml: train\.epochs"),
    ("grandparent causes cross error", _files(**{"x.yaml": "extends: p.yaml\n", "p.yaml": "extends: g.yaml\n",
                                                 "g.yaml": "train:\n  lr: 0.001\n"}),
     r"^error: g\.yaml: train\.lr_min: expected <= train\.lr \(0\.001\)"),
    ("extends missing", _files(**{"x.yaml": "extends: nope.yaml\n"}), r"x\.yaml: extends: nope\.yaml: config file not found"),
    ("extends number", _files(**{"x.yaml": "extends: 5\n"}), r"x\.yaml: extends: expected the path"),
    ("extends empty", _files(**{"x.yaml": "extends:\ntrain:\n  epochs: 1\n"}), r"x\.yaml: extends: expected the path"),
    ("extends list", _files(**{"x.yaml": "extends: [a.yaml]\n"}), r"x\.yaml: extends: expected the path"),
    ("extends folder", _files(**{"x.yaml": "extends: sub\n", "sub": "<dir>"}), r"sub: is a folder"),
    ("extends latin1", _files(**{"x.yaml": "extends: p.yaml\n", "p.yaml": LATIN1}), r"p\.yaml: not UTF-8 text"),
]


@pytest.mark.parametrize("setup,pattern", [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES])
def test_config_files(tmp_path, monkeypatch, capsys, setup, pattern):
    setup(tmp_path)
    run_case(tmp_path, monkeypatch, capsys, ["search", "--config", "x.yaml", *SETS, "--out", "out"], 2, pattern)


# ============================================================================ --set overrides
OVERRIDES = [
    ("data.root=", r"--set data\.root=: data\.root: expected a path, got an empty string \(an unset shell variable\?\)"),
    ("data.root=   ", r"data\.root: expected a path"),
    ("data.root=''", r"data\.root: expected a path"),
    ("data.cache_dir=", r"data\.cache_dir: expected a path"),
    ("model.genotype=", r"model\.genotype: expected a path"),
    ("search.space=", r"search\.space: expected a path"),
    ("run.device=", r"run\.device: expected a value, got an empty string"),
    ("model.name=", r"model\.name: expected a value"),
    ("data.root=[a, b]", r"data\.root: expected a string or null"),
    ("data.root.sub=1", r"data\.root: expected a string or null"),
    ("train.lr=nan", r"--set train\.lr=nan: train\.lr: expected a finite number"),
    ("train.lr=.nan", r"train\.lr: expected a finite number"),
    ("train.lr=inf", r"train\.lr: expected a finite number"),
    ("train.lr=-inf", r"train\.lr: expected a finite number"),
    ("train.lr=1e999", r"train\.lr: expected a finite number"),
    ("train.momentum=nan", r"train\.momentum: expected a finite number"),
    ("search.arch_lr=.inf", r"search\.arch_lr: expected a finite number"),
    ("train.bce_pos_weight=nan", r"train\.bce_pos_weight: expected a finite number"),
    ("train.betas=[0.9, 1.0]", r"train\.betas: expected every value in \[0, 1\), got \[0\.9, 1\.0\]"),
    ("train.betas=[nan, 0.9]", r"train\.betas: expected a finite number"),
    ("retrain.betas=[1, 0.5]", r"retrain\.betas: expected every value in \[0, 1\)"),
    ("search.arch_betas=[0.5, -0.1]", r"search\.arch_betas: expected every value in \[0, 1\)"),
    ("data.split=[.nan, 0.5, 0.5]", r"data\.split: expected a finite number"),
    ("data.split=[0.5, 0.5, 0.5]", r"data\.split: expected three non-negative fractions summing to 1"),
    ("data.split=[0, 0.5, 0.5]", r"data\.split: .*positive train share"),
    ("data.split=[1.5, -0.25, -0.25]", r"data\.split: expected three non-negative"),
    ("model.out_channels=3", r"--set model\.out_channels=3: model\.out_channels: expected 1 or 2, got 3"),
    ("model.out_channels=0", r"model\.out_channels: expected 1 or 2, got 0"),
    ("train.lr_min=1", r"^error: --set train\.lr_min=1: train\.lr_min: expected <= train\.lr \(0\.025\), got 1\.0"),
    ("train.lr=0.001", r"^error: --set train\.lr=0\.001: train\.lr_min: expected <= train\.lr \(0\.001\)"),
    ("retrain.lr=0.001", r"^error: --set retrain\.lr=0\.001: retrain\.lr_min: the retrain's cosine floor"),
    ("data.augment.scale.min=3", r"^error: --set data\.augment\.scale\.min=3: data\.augment\.scale: min 3\.0 is larger"),
    ("data.augment.brightness_contrast.alpha=[1.3, 0.7]", r"brightness_contrast\.alpha: expected \[low, high\]"),
    ("data.augment.brightness_contrast.alpha=[-1, 0.7]", r"brightness_contrast\.alpha: expected contrast factors >= 0"),
    ("train.lr", r"--set train\.lr: expected KEY=VALUE"),
    ("=5", r"--set =5: empty key"),
    (".x=1", r"--set \.x=1: \.x: expected a dotted key"),
    ("train..lr=1", r"train\.\.lr: expected a dotted key"),
    ("nosuch.key=1", r"--set nosuch\.key=1: nosuch: unknown key"),
    ("train.nosuch=1", r"train\.nosuch: unknown key"),
    ("data=5", r"--set data=5: data: expected a mapping, got 5"),
    ("train.epochs=2.5", r"train\.epochs: expected a positive int, got 2\.5"),
    ("train.epochs=0", r"train\.epochs: expected a positive int, got 0"),
    ("data.image_size=40", r"data\.image_size: expected a multiple of 16"),
    ("data.image_size=abc", r"data\.image_size: expected an int in \[16, 4096\], got 'abc'"),
    ("data.limit=0", r"data\.limit: expected a positive int, got 0"),
    ("run.bf16=maybe", r"run\.bf16: expected a bool"),
    ("train.loss=focal", r"train\.loss: expected one of bce, dice, hybrid"),
    ("model.options={1: 2}", r"model\.options: expected a mapping with names as keys, got \{1: 2\}"),
    ("model.options=[1]", r"model\.options: expected a mapping, got \[1\]"),
    ("run.threads=100000", r"run\.threads: expected an int in \[1, 1024\], got 100000"),
]


@pytest.mark.parametrize("override,pattern", OVERRIDES, ids=[o for o, _ in OVERRIDES])
def test_set_overrides(tmp_path, monkeypatch, capsys, override, pattern):
    run_case(tmp_path, monkeypatch, capsys, ["search", *SETS, "--set", override, "--out", "out"], 2, pattern)


def test_earlier_override_fixed_by_a_later_one_is_fine():
    """Cross-field rules run once, after every override: lowering lr then lr_min is no error."""
    from nas.config import load_config

    cfg = load_config(None, ["train.lr=0.001", "train.lr_min=0.0001"])
    assert (cfg.train.lr, cfg.train.lr_min) == (0.001, 0.0001)


# ============================================================================ data folders
def _folder(d: Path, n: int = 6, mask=lambda m: m, name: str = "data") -> Path:
    """A `folder`-layout dataset of n pairs, each mask passed through `mask` before writing."""
    root = d / name
    for k in range(n):
        img, m = tiny_pair(k, 32, 32)
        write(root / "images" / f"img{k}.png", img)
        write(root / "masks" / f"img{k}.png", mask(m))
    return root


def _truncated_mask(d: Path) -> None:
    root = _folder(d)
    p = root / "masks" / "img2.png"
    p.write_bytes(p.read_bytes()[:60])


def _mask_wrong_size(d: Path) -> None:
    root = _folder(d)
    write(root / "masks" / "img1.png", np.zeros((20, 20), np.uint8))


def _isic_without_test(d: Path) -> None:
    root = make_layout(d / "data", "isic2017", n=3)
    for sub in ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"):
        shutil.rmtree(root / sub)


def _groups(text: str, name: str = "g.csv") -> Callable[[Path], None]:
    """A `folder` dataset (img0..img5) and a groups file `name` holding `text`."""
    def setup(d: Path) -> None:
        _folder(d)
        (d / name).write_text(text)
    return setup


def _ham_metadata(d: Path) -> None:
    """HAM10000 layout whose metadata table lacks the last image."""
    root = make_layout(d / "data", "ham10000", n=3)
    ids = sorted(p.stem for p in root.glob("HAM10000_images_part_*/*.jpg"))
    (root / "HAM10000_metadata.csv").write_text("lesion_id,image_id\n" + "".join(f"HAM_1,{i}\n" for i in ids[:-1]))


GROUPED = ["--set", "data.root=data", "--set", "data.groups=g.csv"]
RETRAIN = ["retrain", "--model", "unet", "--set", "model.width=4", *SETS]
SEARCH = ["search", *SETS]
LIST = True  # bad data files: the list of files above the error line
DATA = [
    ("root missing", lambda d: None, [*SEARCH, "--set", "data.root=nope"], 2, r"nope: dataset folder not found"),
    ("root is a file", lambda d: (d / "f.txt").write_text("x"), [*SEARCH, "--set", "data.root=f.txt"], 2,
     r"f\.txt: "),
    ("root empty folder", lambda d: (d / "data").mkdir(), [*SEARCH, "--set", "data.root=data"], 2,
     r"data: no known dataset layout found"),
    ("layout needs root", lambda d: None, [*SEARCH, "--set", "data.layout=isic2017"], 2,
     r"data\.layout=isic2017 needs data\.root"),
    ("synthetic with root", _folder, [*SEARCH, "--set", "data.root=data", "--set", "data.layout=synthetic"], 2,
     r"data\.layout=synthetic generates its data"),
    ("every mask empty", lambda d: _folder(d, mask=lambda m: m * 0), [*SEARCH, "--set", "data.root=data"], 1,
     r"data: training split: every one of the \d+ masks is empty"),
    ("16-bit masks holding 0/1", lambda d: _folder(d, mask=lambda m: (m > 0).astype(np.uint16)),
     [*SEARCH, "--set", "data.root=data"], 1, r"mask values are 0/1", LIST),
    ("truncated mask", _truncated_mask, [*SEARCH, "--set", "data.root=data"], 1,
     r"1 bad data file .*truncated PNG", LIST),
    ("mask of another size", _mask_wrong_size, [*SEARCH, "--set", "data.root=data"], 1,
     r"mask is 20x20 but its image", LIST),
    ("retrain: no test part", lambda d: None, [*RETRAIN, "--set", "data.split=[0.85, 0.15, 0]"], 2,
     r"data\.split \[0\.85, 0\.15, 0\.0\]: the test part of the 8 usable pairs is empty .*nas retrain needs "
     r"train, val, test"),
    ("retrain: no val part", lambda d: None, [*RETRAIN, "--set", "data.split=[0.85, 0, 0.15]"], 2,
     r"the val part .* is empty"),
    ("retrain: limit 2", lambda d: None, [*RETRAIN, "--set", "data.limit=2"], 2,
     r"the test part of the 2 usable pairs is empty .*raise data\.limit, now 2"),
    ("retrain: official split without test", _isic_without_test,
     [*RETRAIN, "--set", "data.root=data", "--set", "data.split=[0.85, 0.15, 0]"], 2,
     r"the test part .* is empty \(train 3, val 3, test 0; split official\).*official training set"),
    ("search: limit 1", lambda d: None, [*SEARCH, "--set", "data.limit=1"], 2, r"search needs at least 2 training pairs"),
    ("groups file missing", _folder, [*SEARCH, "--set", "data.root=data", "--set", "data.groups=nope.csv"], 2,
     r"^error: nope\.csv: groups CSV \(data\.groups\) not found$"),
    ("groups file is a folder", lambda d: (_folder(d), (d / "g.csv").mkdir()), [*SEARCH, *GROUPED], 2,
     r"g\.csv: is a folder; expected a groups CSV \(data\.groups\)"),
    ("groups file empty", _groups(""), [*SEARCH, *GROUPED], 2, r"g\.csv: empty file"),
    ("groups file without its columns", _groups("name,lesion\nimg0,a\n"), [*SEARCH, *GROUPED], 2,
     r"g\.csv: expected an image id column \(image_id or id\) and a group column \(lesion_id or group\); "
     r"found columns name, lesion"),
    ("groups file header only", _groups("id,group\n"), [*SEARCH, *GROUPED], 2, r"g\.csv: no rows below the header"),
    ("image without a group", _groups("id,group\n" + "".join(f"img{k},p{k}\n" for k in range(5))),
     [*SEARCH, *GROUPED], 2, r"g\.csv: 1 of the 6 images has no group \(first: img5\); .*data\.groups=none"),
    ("image in two groups", _groups("image_id,lesion_id\nimg0,a\nimg0,b\n"), [*SEARCH, *GROUPED], 2,
     r"g\.csv: image img0 is listed in two groups \(a and b\)"),
    ("empty group", _groups("id,group\nimg0,a\nimg1,\n"), [*SEARCH, *GROUPED], 2, r"g\.csv: line 3: empty group"),
    ("HAM10000 metadata without an image", _ham_metadata, [*SEARCH, "--set", "data.root=data"], 2,
     r"HAM10000_metadata\.csv: 1 of the 6 images has no group \(first: ISIC_0024311\)"),
    ("search: one lesion", _groups("id,group\n" + "".join(f"img{k},p\n" for k in range(6))),
     [*SEARCH, *GROUPED], 2, r"search needs at least 2 training groups \(lesions, data\.groups\)"),
]


@pytest.mark.parametrize("setup,argv,code,pattern,file_list", [(*c[1:5], c[5:] == (LIST,)) for c in DATA],
                         ids=[c[0] for c in DATA])
def test_data_folders(tmp_path, monkeypatch, capsys, setup, argv, code, pattern, file_list):
    setup(tmp_path)
    run_case(tmp_path, monkeypatch, capsys, [*argv, "--out", "out"], code, pattern, file_list=file_list,
             leftovers=STARTED_RUN_LEFTOVERS)


DATA_CHECK = [
    ("every mask empty", lambda d: _folder(d, mask=lambda m: m * 0), 1, r"every one of the 6 masks is empty"),
    ("16-bit 0/255 masks read as empty before", lambda d: _folder(d, mask=lambda m: m.astype(np.uint16)), 0,
     r"lesion area fraction mean 0\.2\d+, min 0\.2.* no problems found"),
    ("16-bit 0/65535 masks", lambda d: _folder(d, mask=lambda m: m.astype(np.uint16) * 257), 0,
     r"lesion area fraction mean 0\.2\d+, min 0\.2.* no problems found"),
    ("16-bit all-empty masks", lambda d: _folder(d, mask=lambda m: m.astype(np.uint16) * 0), 1,
     r"every one of the 6 masks is empty"),
]


DATA_COMMANDS = [
    (["data", "check", "data", "--size", "0"], r"nas data check: --size: expected an int in \[16, 4096\], got 0"),
    (["data", "check", "data", "--size", "-3"], r"--size: expected an int in \[16, 4096\], got -3"),
    (["data", "check", "data", "--size", "100000"], r"--size: expected an int in \[16, 4096\], got 100000"),
    (["data", "check", "nope"], r"nope: dataset folder not found"),
    (["data", "check", "data", "--layout", "ph2"], r"data: does not look like PH2"),
    (["data", "check", "data", "--groups", "nope.csv"], r"nope\.csv: groups CSV \(data\.groups\) not found"),
    (["data", "check", "data", "--groups", " "], r"nas data check: --groups: expected a groups CSV file or none"),
    (["data", "check", "data", "--splits", "nope"], r"nope: splits file not found"),
    (["data", "check", "data", "--set", "data.groups="], r"--set data\.groups=: data\.groups: expected a path"),
    (["data", "synth", "--out", "s", "--n", "0"], r"nas data synth: --n: expected a positive int, got 0"),
    (["data", "synth", "--out", "s", "--size", "15"], r"nas data synth: --size: expected an int in \[16, 4096\]"),
    (["data", "synth", "--out", "s", "--size", "99999"], r"nas data synth: --size: expected an int in \[16, 4096\]"),
    (["data", "synth", "--out", "data"], r"data: already exists and is not an empty folder"),
    (["data", "synth", "--out", "s", "--teacher", "nope.yaml"], r"nope\.yaml: genotype file not found"),
    (["data", "synth", "--out", "s", "--teacher", "data/images/img0.png"], r"data/images/img0\.png: "),
    (["data", "synth", "--out", "s", "--images", "data/images"], r"--images needs --teacher"),
    (["data", "synth", "--out", "s", "--teacher", "TEACHER", "--size", "40"], r"--size 40: must be a multiple of 16"),
    (["data", "synth", "--out", "s", "--teacher", "TEACHER", "--images", "nope"], r"--images nope: not a folder"),
    (["data", "synth", "--out", "s", "--teacher", "TEACHER", "--images", "data/masks", "--n", "99"],
     r"--images data/masks: 6 images, fewer than --n 99"),
]


@pytest.mark.parametrize("argv,pattern", DATA_COMMANDS, ids=[" ".join(a) for a, _ in DATA_COMMANDS])
def test_data_commands(tmp_path, monkeypatch, capsys, argv, pattern):
    _folder(tmp_path)
    if "TEACHER" in argv:
        teacher = tmp_path / "teacher.yaml"
        teacher.write_text(yaml.safe_dump(tiny_genotype_dict()))
        argv = [str(teacher.name) if a == "TEACHER" else a for a in argv]
    run_case(tmp_path, monkeypatch, capsys, argv, 2, pattern)


@pytest.mark.parametrize("setup,code,pattern", [c[1:] for c in DATA_CHECK], ids=[c[0] for c in DATA_CHECK])
def test_data_check_reports_set_problems(tmp_path, monkeypatch, capsys, setup, code, pattern):
    """`nas data check` lists problems on stdout (exit 1) rather than one error line."""
    setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    outcome = run_cli(["data", "check", "data", "--size", "32"], capsys)
    assert outcome.crash is None, f"TRACEBACK: {outcome.crash!r}"
    assert (outcome.code, outcome.err) == (code, "")
    assert re.search(pattern, " ".join(outcome.out.split())), outcome.out
    assert snapshot(tmp_path) == before


# ============================================================================ genotype files
def _genotype_text() -> str:
    return yaml.safe_dump(tiny_genotype_dict(), sort_keys=False)


def _cut_after(marker: str, occurrence: int = 1) -> Callable[[Path], None]:
    """The genotype file cut at the end of the line holding the n-th `marker` (a crash mid-write)."""
    def setup(d: Path) -> None:
        text = _genotype_text()
        at = -1
        for _ in range(occurrence):
            at = text.index(marker, at + 1)
        (d / "g.yaml").write_text(text[:text.index("\n", at) + 1])
    return setup


def _genotype(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        data = tiny_genotype_dict()
        mutate(data)
        (d / "g.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return setup


def _raw(content: str | bytes) -> Callable[[Path], None]:
    return _files(**{"g.yaml": content})


def _set_cells(value):
    def mutate(data: dict) -> None:
        data["cells"] = value
    return mutate


def _set_cell(name: str, value):
    def mutate(data: dict) -> None:
        data["cells"][name] = value
    return mutate


def _unknown_space(data: dict) -> None:
    data["search_space"] = "gone_space"
    data["cells"] = {}


def _nan_weight(data: dict) -> None:
    data["cells"]["skip_1_1"]["edges"][0]["weight"] = float("nan")


GENOTYPES = [
    ("latin1", _raw(LATIN1 + _genotype_text().encode()), r"g\.yaml: not UTF-8 text"),
    ("binary", _raw(b"\x00\xff\xfe\x01" * 8), r"g\.yaml: not UTF-8 text"),
    ("folder", _raw("<dir>"), r"g\.yaml: is a folder; expected a (genotype )?file"),
    ("missing", lambda d: None, r"g\.yaml: (genotype file )?not found"),
    ("empty file", _raw(""), r"g\.yaml: expected a genotype mapping"),
    ("bad YAML", _raw("cells: [unclosed\n"), r"g\.yaml: not valid YAML \(line"),
    ("duplicate cell", _raw(_genotype_text() + "  skip_1_1: absent\n"), r"duplicate key 'skip_1_1'"),
    ("cut after the first cell", _cut_after("- 0.55"), r"cells: missing skip_2_2, skip_3_3, skip_4_4 of search space 'tiny' \(is the file cut"),
    ("cut after the second cell", _cut_after("- hand-made"), r"cells: missing skip_2_2, skip_4_4"),
    ("cut inside the edges", _cut_after("- to: 2"), r"cells\.skip_1_1\.edges\[1\]: missing|cells\.skip_1_1\.ssb: missing"),
    ("cut after cells:", _cut_after("cells:"), r"cells: missing skip_1_1, skip_2_2, skip_3_3, skip_4_4"),
    ("cut after a cell name", _cut_after("skip_3_3:"), r"cells\.skip_3_3: empty \(is the file cut short\?\)"),
    ("cells {}", _genotype(_set_cells({})), r"cells: missing skip_1_1, skip_2_2, skip_3_3, skip_4_4 of search space"),
    ("cells null", _genotype(_set_cells(None)), r"cells: missing skip_1_1"),
    ("cell null", _genotype(_set_cell("skip_2_2", None)), r"cells\.skip_2_2: empty"),
    ("cell misspelt absent", _genotype(_set_cell("skip_2_2", "absnt")), r"cells\.skip_2_2: expected a mapping .* or the word `absent`"),
    ("cell not of the space", _genotype(_set_cell("skip_2_1", "absent")), r"cells\.skip_2_1: not a skip of search space 'tiny'"),
    ("cell name padded", _genotype(_set_cell("skip_01_1", "absent")), r"cells\.skip_01_1: cell name must be"),
    ("unknown space, no cells", _genotype(_unknown_space), r"cells: no cells \(is the file cut short\?\)"),
    ("nan weight", _genotype(_nan_weight), r"edges\[0\]\.weight: expected a number in \[0, 1\], got nan"),
    ("no format", _genotype(lambda g: g.pop("format")), r"format: missing"),
    ("top-level list", _raw("- 1\n- 2\n"), r"expected a genotype mapping"),
]


@pytest.mark.parametrize("setup,pattern", [c[1:] for c in GENOTYPES], ids=[c[0] for c in GENOTYPES])
def test_genotype_files(tmp_path, monkeypatch, capsys, setup, pattern):
    setup(tmp_path)
    run_case(tmp_path, monkeypatch, capsys, ["retrain", "--genotype", "g.yaml", *SETS, "--out", "out"], 2, pattern)
    run_case(tmp_path, monkeypatch, capsys, ["plot", "genotype", "g.yaml", "--out", "plots"], 2, pattern)


# ============================================================================ alphas.csv
@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A real one-epoch `tiny` search; each case corrupts a copy of its alphas.csv."""
    out = tmp_path_factory.mktemp("search") / "run"
    assert main(["search", *SETS, "--out", str(out)]) == 0
    return out


def _alphas(edit: Callable[[bytes], bytes] | str) -> Callable[[Path], None]:
    def setup(run: Path) -> None:
        path = run / "alphas.csv"
        if edit == "<dir>":
            path.unlink()
            path.mkdir()
        elif edit == "<missing>":
            path.unlink()
        else:
            path.write_bytes(edit(path.read_bytes()))
    return setup


def _garble_step(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    lines[-1] = re.sub(rb"^([^,]*),\d+,", rb"\1,x7,", lines[-1])
    return b"".join(lines)


ALPHAS = [
    ("latin1 byte", _alphas(lambda b: b.replace(b"skip_1_1", "sk\xefp_1_1".encode("latin-1"), 1)),
     r"alphas\.csv: not UTF-8 text"),
    ("binary", _alphas(lambda b: b"\xff\xfe\x00\x01" * 64), r"alphas\.csv: not UTF-8 text"),
    ("empty", _alphas(lambda b: b""), r"alphas\.csv: empty file"),
    ("folder", _alphas("<dir>"), r"alphas\.csv: is a folder"),
    ("missing", _alphas("<missing>"), r"alphas\.csv: .*not found"),
    ("header only", _alphas(lambda b: b.splitlines(keepends=True)[0]), r"alphas\.csv: "),
    ("wrong header", _alphas(lambda b: b.replace(b"epoch,step", b"epoc,stp", 1)), r"alphas\.csv: "),
]
ALPHAS_DISCRETIZE_ONLY = [
    ("garbage step", _alphas(_garble_step), r"alphas\.csv: bad row"),
]


@pytest.mark.parametrize("setup,pattern", [c[1:] for c in ALPHAS], ids=[c[0] for c in ALPHAS])
def test_alphas_csv(tmp_path, monkeypatch, capsys, search_run, setup, pattern):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    (run / "checkpoints" / "last.pt").unlink()  # --from-epoch then reads alphas.csv
    setup(run)
    run_case(tmp_path, monkeypatch, capsys, ["plot", "alphas", "run"], 2, pattern)
    run_case(tmp_path, monkeypatch, capsys, ["discretize", "run", "--from-epoch", "1"], 2, pattern)


@pytest.mark.parametrize("setup,pattern", [c[1:] for c in ALPHAS_DISCRETIZE_ONLY],
                         ids=[c[0] for c in ALPHAS_DISCRETIZE_ONLY])
def test_alphas_csv_discretize(tmp_path, monkeypatch, capsys, search_run, setup, pattern):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    (run / "checkpoints" / "last.pt").unlink()
    setup(run)
    run_case(tmp_path, monkeypatch, capsys, ["discretize", "run", "--from-epoch", "1"], 2, pattern)
