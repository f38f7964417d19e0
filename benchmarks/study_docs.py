"""Copy a finished study's table, per-run results and figures into the docs, with a sample montage.

    python benchmarks/study_docs.py studies/stability-digits docs/studies/stability-digits

Writes DOCS/table.md, results.csv, study.json, the primary metric's figures (panels, curves, final)
and samples.png: for each variant, the top rows of the last sample grid of its first done seed,
labelled. Prints what it wrote as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from normgan.report.folders import sample_files

LABEL_WIDTH = 90


def montage(study: dict, folder: Path, *, rows: int, tile: int = 34) -> Image.Image:
    """Per variant the first ``rows`` rows of tiles of its last sample grid (grids of ``tile``-px cells + 2 px border)."""
    strips = []
    for v in study["variants"]:
        run = next((r for r in study["runs"] if r["variant"] == v["name"] and r["state"] == "done"), None)
        grids = sample_files(folder / run["run"]) if run else []
        if not grids:
            continue
        with Image.open(grids[-1][1]) as im:
            strip = im.convert("RGB").crop((0, 0, im.size[0], min(im.size[1], rows * tile + 2)))
        strips.append((f"{v['name']}\nseed {run['seed']}\nstep {grids[-1][0]}", strip))
    width = LABEL_WIDTH + max(s.size[0] for _, s in strips)
    out = Image.new("RGB", (width, sum(s.size[1] + 4 for _, s in strips)), "white")
    y = 0
    draw = ImageDraw.Draw(out)
    for label, strip in strips:
        draw.multiline_text((6, y + 6), label, fill="black")
        out.paste(strip, (LABEL_WIDTH, y))
        y += strip.size[1] + 4
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", type=Path)
    p.add_argument("docs", type=Path)
    p.add_argument("--rows", type=int, default=4, help="rows of sample tiles per variant (default 4)")
    a = p.parse_args(argv)
    study = json.loads((a.study / "study.json").read_text())
    a.docs.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("table.md", "results.csv", "study.json"):
        shutil.copyfile(a.study / name, a.docs / name)
        written.append(name)
    m = study["metric"]
    for name in (f"panels-{m}.png", f"curves-{m}.png", f"final-{m}.png"):
        if (a.study / "plots" / name).is_file():
            shutil.copyfile(a.study / "plots" / name, a.docs / name)
            written.append(name)
    montage(study, a.study, rows=a.rows).save(a.docs / "samples.png", optimize=True)
    written.append("samples.png")
    json.dump({"study": str(a.study), "docs": str(a.docs), "files": written}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
