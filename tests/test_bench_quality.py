"""Quality regression: on the smallest benchmark case dfdb must clearly beat the input and ffmpeg.

Runs the real benchmark pipeline (degraded clip → raw file → dfdb in a worker process and
every ffmpeg peer → metrics → report and plots) on one tiny clip. No timing is asserted.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfdb.bench.runner import Case, run_bench

TINY = Case("objects 128×96, old_film", "objects", "old_film", frames=16, height=96, width=128, seed=0)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    return run_bench(out, quick=True, presets=["balanced"], device="cpu", runs=1, cases=(TINY,), log=lambda _: None), out


def _rows(record: dict) -> dict[str, dict]:
    return {r["method"]: r for r in record["cases"][0]["rows"]}


def test_report_files(record: tuple[dict, Path]) -> None:
    rec, out = record
    assert json.loads((out / "bench.json").read_text())["cases"][0]["name"] == TINY.name
    table = (out / "bench.md").read_text()
    for name in _rows(rec):
        assert f"| {name} |" in table
    for png in ("quality-vs-speed.png", "brightness-objects-128-96-old-film.png", "crops-objects-128-96-old-film.png"):
        assert (out / png).stat().st_size > 1000


def test_dfdb_beats_the_input_by_clear_margins(record: tuple[dict, Path]) -> None:
    rows = _rows(record[0])
    ours, degraded = rows["dfdb balanced"], rows["input (degraded)"]
    assert ours["psnr"] > degraded["psnr"] + 3.0
    # Measured 0.49 on this 16-frame clip (0.19 on the 40-frame objects case of the benchmark):
    # the long-range term needs frames on both sides. The engine's target is 0.3.
    assert ours["flicker"] < 0.65 * degraded["flicker"]
    assert ours["blotch_error"] < 0.5 * degraded["blotch_error"]
    assert ours["fps"] > 0 and ours["peak_mb"] > 0
    assert ours["recall"] is not None and ours["recall"] > 0.5


def test_dfdb_beats_the_best_ffmpeg_chain_by_a_clear_margin(record: tuple[dict, Path]) -> None:
    # Measured +1.02 dB (28.40 against 27.38 for ffmpeg deflicker s15 + tmedian r2) on this
    # 16-frame clip, which leaves the long-range term (8 frames each way) few complete pairs;
    # the benchmark's 40-frame cases measure +0.5 to +5.7 dB. The 0.1 dB below the measured
    # margin absorbs floating-point differences between machines.
    rows = _rows(record[0])
    best_ffmpeg = max(r["psnr"] for r in rows.values() if r["kind"] == "ffmpeg")
    assert rows["dfdb balanced"]["psnr"] > best_ffmpeg + 0.9
