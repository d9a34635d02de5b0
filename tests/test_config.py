"""Config schema: typed parsing, overrides, and one-line errors naming file and key."""

import pytest

from nas.config import load_config, retrain_settings
from nas.errors import UserError


def test_defaults_and_typed_overrides():
    cfg = load_config(None, ["data.image_size=128", "train.betas=[0.5, 0.9]", "run.bf16=true",
                             "data.limit=null", "search.order=2"])
    assert cfg.data.image_size == 128 and cfg.train.betas == [0.5, 0.9]
    assert cfg.run.bf16 is True and cfg.data.limit is None and cfg.search.order == 2


def test_file_error_names_file_and_key(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("data:\n  image_size: big\n")
    with pytest.raises(UserError) as e:
        load_config(f)
    assert str(e.value) == f"{f}: data.image_size: expected an int in [16, 4096], got 'big'"
    assert e.value.exit_code == 2


@pytest.mark.parametrize("text, key", [
    ("data:\n  imagesize: 3\n", "data.imagesize: unknown key"),
    ("train:\n  loss: focal\n", "train.loss: expected one of"),
    ("train:\n  epochs: 0\n", "train.epochs: expected a positive int"),
    ("data:\n  split: [0.5, 0.6, 0.1]\n", "data.split: expected three"),
    ("run:\n  bf16: maybe\n", "run.bf16: expected a bool"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_values(tmp_path, text, key):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        load_config(f)
    assert key in str(e.value) and str(f) in str(e.value)
    assert "\n" not in str(e.value)


def test_override_error_names_override():
    with pytest.raises(UserError, match=r"--set train.lr=fast: train.lr: expected a number"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_config(None, ["train.lr"])


def test_extends_and_missing_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n  lr: 0.1\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain:\n  lr: 0.2\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.2
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_retrain_overrides_train_section():
    cfg = load_config(None, ["retrain.optimizer=radam", "retrain.epochs=40", "train.epochs=30"])
    tc = retrain_settings(cfg)
    assert tc.optimizer == "radam" and tc.epochs == 40 and tc.lr == cfg.train.lr
    assert cfg.train.epochs == 30


def test_shipped_experiments_are_valid():
    from pathlib import Path

    from nas.genotype import load_genotype
    from nas.suite import load_suite

    files = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
    assert files, "no experiment files shipped"
    for f in files:  # suites, genotypes (the teacher task's) and configs, each as what it is
        if f.name.startswith("suite_"):
            load_suite(f)
        elif f.name.endswith("_genotype.yaml"):
            load_genotype(f)
        else:
            load_config(f)


def test_config_reference_is_up_to_date():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent.parent
    r = subprocess.run([sys.executable, str(root / "tools" / "gen_config_docs.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_float_keys_accept_yaml_text_exponents(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text("search:\n  arch_lr: 1e-4\n")
    assert load_config(f).search.arch_lr == 1e-4
    assert load_config(None, ["train.weight_decay=3e-4"]).train.weight_decay == 3e-4


def test_image_size_must_be_multiple_of_16():
    with pytest.raises(UserError, match="data.image_size: expected a multiple of 16"):
        load_config(None, ["data.image_size=40"])


def test_resume_cannot_take_a_new_config(tmp_path, capsys):
    from nas.cli import main

    assert main(["search", "--resume", str(tmp_path), "--config", "x.yaml"]) == 2
    assert "--resume continues a run" in capsys.readouterr().err


def test_extends_chain_resolves_each_file_relative_to_itself(tmp_path):
    """child -> ../shared/parent -> grand: every level counts, the nearest file wins."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "exp").mkdir()
    (tmp_path / "shared" / "grand.yaml").write_text("train:\n  epochs: 9\n  lr: 0.5\n  momentum: 0.5\n")
    (tmp_path / "shared" / "parent.yaml").write_text("extends: grand.yaml\ntrain:\n  lr: 0.2\n")
    (tmp_path / "exp" / "child.yaml").write_text("extends: ../shared/parent.yaml\ntrain:\n  momentum: 0.8\n")
    cfg = load_config(tmp_path / "exp" / "child.yaml")
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.momentum) == (9, 0.2, 0.8)


def test_cross_field_errors_name_the_source_that_set_a_key(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("train:\n  lr: 0.001\n")
    with pytest.raises(UserError, match=r"^--set train\.lr_min=0\.5: train\.lr_min: expected <= train\.lr \(0\.001\)"):
        load_config(f, ["train.epochs=3", "train.lr_min=0.5", "run.seed=1"])
    with pytest.raises(UserError, match=rf"^{f}: train\.lr_min"):
        load_config(f, ["train.epochs=3"])
    with pytest.raises(UserError, match=r"^runs/x/config\.yaml: train\.lr_min"):
        load_config(None, [], base={"train": {"lr": 0.001}}, base_source="runs/x/config.yaml")


def test_files_with_a_byte_order_mark_load(tmp_path):
    f = tmp_path / "bom.yaml"
    f.write_bytes("\ufefftrain:\n  epochs: 4\n".encode("utf-8"))
    assert load_config(f).train.epochs == 4


def test_every_float_key_refuses_nan_and_inf():
    from nas.config import iter_keys

    floats = [key for key, type_name, *_ in iter_keys() if type_name.startswith("number")]
    assert len(floats) > 20
    for key in floats:
        for bad in (".nan", "inf", "-.inf"):
            with pytest.raises(UserError, match=rf"{key}: expected a finite number"):
                load_config(None, [f"{key}={bad}"])


def test_retrain_cosine_floor_must_stay_below_its_learning_rate():
    with pytest.raises(UserError, match=r"retrain\.lr_min: the retrain's cosine floor \(0\.003, from train\.lr_min\)"):
        load_config(None, ["retrain.lr=0.001"])
    cfg = load_config(None, ["retrain.lr=0.001", "retrain.lr_min=0.00001"])
    assert retrain_settings(cfg).lr_min == 0.00001


def test_an_empty_section_keeps_what_it_extends(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain:\n#  epochs: 9\n")
    assert load_config(tmp_path / "child.yaml").train.epochs == 7
