#!/usr/bin/env bash
# Quick start: set up, make a flickering, dirty sample clip, restore it, and show the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p sample
.venv/bin/dfdb sample sample/scan.mkv --frames 48 --width 320 --height 180 --profile old_film
.venv/bin/dfdb restore sample/scan.mkv sample/restored.mkv --progress \
  --mask-out sample/blotches.mkv --stats-out sample/stats.json --compare sample/compare.png
.venv/bin/python - <<'PY'
import json, numpy as np, av
def frames(path):
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32) / 255
clean, scan, out = (frames(f"sample/{n}.mkv") for n in ("scan.clean", "scan", "restored"))
psnr = lambda a: 10 * np.log10(1 / np.mean((a - clean) ** 2))
stats = json.load(open("sample/stats.json"))
print(f"PSNR against the clean clip: input {psnr(scan):.2f} dB -> restored {psnr(out):.2f} dB")
print(f"blotches repaired: {sum(f['blotch_count'] for f in stats['frames'])} in {len(stats['frames'])} frames")
print("outputs: sample/restored.mkv, sample/blotches.mkv, sample/stats.json, sample/compare.png")
PY
