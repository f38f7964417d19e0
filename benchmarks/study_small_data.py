"""Summarize the small-data-digits study: per training-set size and method, FID against held-out
digits, the FID gap train vs held-out, memorization (mean ± std over seeds), the FID change against
no regularization with Welch's p, and ADA's p over steps (a figure).

    python benchmarks/study_small_data.py studies/small-data-digits [MORE_STUDY_FOLDERS] --docs docs/studies/small-data

Variants are named ``n<size>-<method>`` (normgan/configs/studies/small-data-digits.yaml); several
study folders (e.g. the two halves of one study) are read together. Writes DOCS/summary.json,
DOCS/summary.md and DOCS/ada-p.png and prints the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy import stats

MEASURES = ("fid", "fid_gap", "memorization", "fid_gap_real", "memorization_real", "precision", "recall")


def runs_of(folders):
    """(size, method, seed, final scores, run folder, seconds) of every finished run."""
    out = []
    for folder in folders:
        study = json.loads((folder / "study.json").read_text())
        for r in study["runs"]:
            if r["state"] != "done" or not r.get("final"):
                continue
            size, method = r["variant"].split("-", 1)
            out.append((int(size[1:]), method, r["seed"], r["final"], folder / r["run"], r.get("seconds") or 0.0))
    return out


def _mean_std(xs):
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarize(runs) -> dict:
    """Per size and method: n, mean/std of each measure, FID change vs 'none' and Welch's p."""
    table: dict = {}
    for size in sorted({r[0] for r in runs}):
        rows = {}
        base = [r[3]["fid"] for r in runs if r[0] == size and r[1] == "none"]
        for method in dict.fromkeys(r[1] for r in runs if r[0] == size):
            finals = [r[3] for r in runs if r[0] == size and r[1] == method]
            row = {"seeds": len(finals)}
            for m in MEASURES:
                vals = [f[m] for f in finals if m in f]
                if vals:
                    row[m] = _mean_std(vals)
            fids = [f["fid"] for f in finals]
            if base and method != "none":
                row["fid_change"] = statistics.fmean(fids) / statistics.fmean(base) - 1.0
                row["welch_p"] = float(stats.ttest_ind(fids, base, equal_var=False).pvalue) if len(fids) > 1 else None
            rows[method] = row
        table[size] = rows
    return table


def ada_p(runs) -> dict:
    """Per size, the seeds' ``aug/p`` logged over steps by the ada runs: {size: {step: [p per seed]}}."""
    out: dict = {}
    for size, method, _seed, _final, folder, _s in runs:
        if not method.startswith("ada"):
            continue
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if "aug/p" in row:
                out.setdefault(size, {}).setdefault(row["step"], []).append(row["aug/p"])
    return out


def plot_p(p: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for size, by_step in sorted(p.items()):
        steps = sorted(by_step)
        ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], label=f"{size} digits (mean of seeds)")
        lo = [min(by_step[s]) for s in steps]
        hi = [max(by_step[s]) for s in steps]
        ax.fill_between(steps, lo, hi, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel("ADA p")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(table: dict) -> str:
    def f(row, m, digits=4):
        if m not in row:
            return "–"
        mean, std = row[m]
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = []
    for size, rows in table.items():
        lines += [
            f"**{size} training digits**",
            "",
            "| method | seeds | FID (held-out) | vs none | Welch p | FID gap (real {gap}) | memorization (real {mem}) |".format(
                gap=f(rows.get("none", {}), "fid_gap_real"), mem=f(rows.get("none", {}), "memorization_real", 2)
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for method, row in rows.items():
            change = f"{row['fid_change']:+.0%}" if "fid_change" in row else "–"
            p = f"{row['welch_p']:.3f}" if row.get("welch_p") is not None else "–"
            lines.append(
                f"| {method} | {row['seeds']} | {f(row, 'fid')} | {change} | {p} | {f(row, 'fid_gap')} | "
                f"{f(row, 'memorization', 2)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("studies", type=Path, nargs="+")
    ap.add_argument("--docs", type=Path, required=True)
    a = ap.parse_args(argv)
    runs = runs_of(a.studies)
    table = summarize(runs)
    p = ada_p(runs)
    a.docs.mkdir(parents=True, exist_ok=True)
    if p:
        plot_p(p, a.docs / "ada-p.png")
    final_p = {size: _mean_std(by_step[max(by_step)]) for size, by_step in p.items()}
    out = {
        "table": table,
        "ada_final_p": final_p,
        "runs": len(runs),
        "run_minutes_total": round(sum(r[5] for r in runs) / 60, 1),
    }
    (a.docs / "summary.json").write_text(json.dumps(out, indent=2))
    (a.docs / "summary.md").write_text(markdown(table))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
