"""The benchmark's Markdown report, from the JSON record of :func:`runner.run_bench`."""
from __future__ import annotations

from typing import Any

from .peers import REFERENCE_CHAIN

#: (column title, row key, format) of the per-case quality-and-speed table.
COLUMNS = (
    ("psnr dB", "psnr", "{:.2f}"),
    ("ssim", "ssim", "{:.4f}"),
    ("flicker", "flicker", "{:.4f}"),
    ("blotch err", "blotch_error", "{:.4f}"),
    ("false repairs", "false_repairs", "{:.2%}"),
    ("fps", "fps", "{:.1f}"),
    ("peak MB", "peak_mb", "{:.0f}"),
    ("× chain", "vs_chain", "{:.2f}"),
    ("blotch P / R", None, ""),
    ("warp err", "warp_error", "{:.4f}"),
)


def _fmt(value: Any, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def _pr(row: dict[str, Any]) -> str:
    if row["precision"] is None and row["recall"] is None:
        return "–"
    return f"{_fmt(row['precision'], '{:.2f}')} / {_fmt(row['recall'], '{:.2f}')}"


def case_table(case: dict[str, Any]) -> str:
    """One Markdown table: rows input, peers, presets; quality and speed columns."""
    lines = ["| method | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in case["rows"]:
        cells = [_pr(row) if key is None else _fmt(row.get(key), pattern) for _, key, pattern in COLUMNS]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paper_line(record: dict[str, Any]) -> str:
    p = record["paper"]
    fps = p["frames"] / p["seconds"]
    return (f"Paper's reference speed (Fulari et al., WACV 2024): ≈ {p['seconds'] / 60:.0f} min for "
            f"{p['height']}×{p['width']}×{p['frames']} frames with W = {p['window']} on a GPU, i.e. ≈ {fps:.2f} fps "
            f"({p['height'] * p['width'] * fps / 1e6:.3f} Mpixel/s).")


def scaling_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| preset | W | resolution | fps | Mpixel/s | peak MB | ffmpeg chain fps | × chain |", "|---" * 8 + "|"]
    for r in rows:
        mpx = r["fps"] * r["width"] * r["height"] / 1e6
        lines.append(f"| {r['preset']} | {r['window']} | {r['width']}×{r['height']} | {r['fps']:.2f} | {mpx:.2f} | "
                     f"{r['peak_mb']:.0f} | {_fmt(r['chain_fps'], '{:.1f}')} | {_fmt(r['vs_chain'], '{:.2f}')} |")
    return "\n".join(lines)


def memory_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| preset | resolution | frames | length | peak MB | fps (incl. generating the frames) |", "|---" * 6 + "|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['width']}×{r['height']} | {r['frames']} | {r['seconds_of_video']:.1f} s | "
                     f"{r['peak_mb']:.0f} | {r['fps']:.2f} |")
    if len(rows) >= 2:
        growth = rows[-1]["peak_mb"] / rows[0]["peak_mb"] - 1
        lines.append(f"\nPeak memory of the longest clip is {growth:+.1%} relative to the shortest.")
    return "\n".join(lines)


NOTES = """\
Metrics (all against the clean clip): psnr = mean per-frame PSNR; ssim = mean per-frame SSIM of
the luma; flicker = temporal std of the per-region median luma error over a 4×4 grid, averaged
over regions (0 = no flicker left); blotch err = mean absolute error inside the true blotch
masks; false repairs = fraction of pixels flagged as blotches on flicker-only footage; blotch
P / R = precision / recall of the detected blotch mask; warp err = mean |Y_t − Y_{t+1}(x + u)|
along the clean clip's DIS flow on forward–backward consistent pixels (the clean clip's own
value is given as the floor). fps = frames / median wall time of the runs (ffmpeg: whole
process; dfdb: restorer construction and the streamed pass over the raw file, interpreter
start-up excluded); peak MB = peak resident memory of the process that did the work (dfdb's
includes the interpreter and torch). × chain = fps relative to `{chain}` in the same run."""


def markdown(record: dict[str, Any]) -> str:
    """The whole report: environment, one table per case, scaling, memory, notes."""
    env = record["environment"]
    out = [
        "# dfdb bench" + (" (quick)" if record["quick"] else ""),
        "",
        f"Machine: {env['platform']}, {env['cpus']} CPUs, torch {env['torch']} ({env['torch_threads']} threads), "
        f"device {env['device']}{' (' + env['cuda'] + ')' if env.get('cuda') else ''}; {env['runs']} runs per method.",
        "",
        _paper_line(record),
    ]
    for case in record["cases"]:
        t, h, w = case["shape"]
        out += ["", f"## {case['name']} — {w}×{h}, {t} frames", "", case_table(case), "",
                f"Clean clip's own warp err (floor): {_fmt(case['clean_warp_error'], '{:.4f}')}."]
    if record["scaling"]:
        out += ["", "## Speed versus resolution and window", "", scaling_table(record["scaling"])]
    if record["memory"]:
        out += ["", "## Peak memory versus clip length (streamed)", "", memory_table(record["memory"])]
    out += ["", "## Notes", "", NOTES.replace("{chain}", REFERENCE_CHAIN), ""]
    return "\n".join(out)
