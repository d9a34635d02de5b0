"""tools/bench_search.py --variants: side-by-side runs in fresh processes, and its bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "bench_search.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("bench_search", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_run_side_by_side_with_ratios_to_the_first(capsys: pytest.CaptureFixture) -> None:
    bench = load_tool()
    here = str(TOOL.parent.parent)
    result = bench.main(["--space", "tiny", "--batch", "2", "--size", "32", "--steps", "1", "--warmup", "0",
                         "--threads", "1", "--rounds", "1", "--variants", f"fp32@{here},bf16+nchw"])
    rows = {r["variant"]: r for r in result["variants"]}
    assert list(rows) == [f"fp32@{here}", "bf16+nchw"]
    assert rows[f"fp32@{here}"]["speedup_vs_first"] == 1.0
    for r in rows.values():
        assert r["step_s"] > 0 and r["peak_rss_mb"] > 100 and len(r["rounds_s"]) == 1
        assert r["images_per_s"] == pytest.approx(2 / r["step_s"], rel=1e-2)
    out = capsys.readouterr().out
    assert "peak RSS" in out and '"bench": "search_step_variants"' in out


@pytest.mark.parametrize("spec,message", [
    ("fp32,fast", "bad variant 'fast'"),
    ("fp32+bf16", "bad variant 'fp32+bf16'"),
    ("fp32@no/such/dir", "no/such/dir is not a checkout"),
])
def test_bad_variants_exit_with_one_error_line(spec: str, message: str) -> None:
    bench = load_tool()
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--variants", spec])
    assert str(info.value).startswith("error: --variants: ") and message in str(info.value)
