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
