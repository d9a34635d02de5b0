"""`nas data synth` and `nas data check`, through their own argparse registration."""

from __future__ import annotations

import argparse

import pytest

from nas.commands import data as data_command
from nas.errors import UserError
from test_data_fixtures import make_layout


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nas")
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_synth_then_check_clean(tmp_path, capsys):
    out = tmp_path / "synth"
    assert run(["data", "synth", "--out", str(out), "--n", "8", "--size", "32", "--seed", "2"]) == 0
    assert (out / "ISIC-2017_Training_Data").is_dir()
    capsys.readouterr()
    assert run(["data", "check", str(out), "--size", "16"]) == 0
    text = capsys.readouterr().out
    assert "isic2017" in text and "8 usable of 8" in text and "lesion area fraction" in text and "no problems" in text


def test_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(UserError, match="not an empty folder"):
        run(["data", "synth", "--out", str(tmp_path), "--n", "2"])


def test_check_lists_problems_and_exits_1(tmp_path, capsys):
    root = make_layout(tmp_path, "folder", n=4)
    (root / "masks" / "img1_mask.png").unlink()
    assert run(["data", "check", str(root), "--layout", "folder"]) == 1
    text = capsys.readouterr().out
    assert "1 problem" in text and "img1.png" in text and "image without mask" in text


def test_every_option_has_help():
    parser = argparse.ArgumentParser(prog="nas")
    sub = parser.add_subparsers()
    data_command.register(sub)
    data_parser = sub.choices["data"]
    for action in data_parser._subparsers._group_actions[0].choices.values():
        for opt in action._actions:
            if not isinstance(opt, argparse._HelpAction):
                assert opt.help, opt.dest


def _teacher_file(tmp_path):
    import yaml

    from test_genotype import tiny_genotype_dict

    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(tiny_genotype_dict()))
    return path


def test_synth_teacher_writes_a_folder_dataset_labelled_by_the_genotype(tmp_path, capsys):
    import numpy as np

    from nas.data.files import read_mask
    from nas.genotype import load_genotype

    teacher = _teacher_file(tmp_path)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert run(["data", "synth", "--teacher", str(teacher), "--out", str(out), "--n", "6", "--size", "32"]) == 0
    assert "lesion fraction 0.3" in " ".join(capsys.readouterr().out.split())
    assert sorted(p.name for p in (outs[0] / "masks").iterdir()) == [f"teacher_{i:05d}.png" for i in range(6)]
    assert load_genotype(outs[0] / "teacher.yaml").to_dict() == load_genotype(teacher).to_dict()
    masks = [np.stack([read_mask(p) for p in sorted((o / "masks").iterdir())]) for o in outs]
    assert np.array_equal(masks[0], masks[1])  # same seed, same dataset
    assert 0.2 < (masks[0] > 128).mean() < 0.4
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # written whole, then renamed
    assert run(["data", "check", str(outs[0]), "--size", "32"]) == 0


def test_synth_teacher_labels_given_images_and_other_seeds_draw_other_teachers(tmp_path):
    import numpy as np

    from nas.data.files import read_mask

    teacher = _teacher_file(tmp_path)
    assert run(["data", "synth", "--out", str(tmp_path / "src"), "--n", "8", "--size", "48"]) == 0
    run(["data", "synth", "--teacher", str(teacher), "--out", str(tmp_path / "t0"), "--n", "4", "--size", "32",
         "--images", str(tmp_path / "src")])
    run(["data", "synth", "--teacher", str(teacher), "--out", str(tmp_path / "t1"), "--n", "4", "--size", "32",
         "--images", str(tmp_path / "src"), "--seed", "1"])
    m0, m1 = ([read_mask(p) for p in sorted((tmp_path / t / "masks").iterdir())] for t in ("t0", "t1"))
    assert len(m0) == 4 and m0[0].shape == (32, 32)
    assert not all(np.array_equal(a, b) for a, b in zip(m0, m1))


def test_synth_teacher_names_an_unreadable_image_and_leaves_no_folder(tmp_path):
    teacher = _teacher_file(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"a\.png: cannot read the image"):
        run(["data", "synth", "--teacher", str(teacher), "--out", str(tmp_path / "t"), "--n", "1", "--size", "32",
             "--images", str(src)])
    assert not (tmp_path / "t").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "teacher.yaml"]  # no temporary folder left
