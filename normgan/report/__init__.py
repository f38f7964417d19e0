"""Self-contained HTML reports of run, study and comparison folders: ``normgan report PATH``, ``train.report: true``.

    from normgan.report import write_run_report
    write_run_report("runs/00000-mnist5k-bce")          # -> runs/00000-mnist5k-bce/report.html

One page per run (:mod:`normgan.report.run`): the run and its resolved config, training curves,
evaluation metrics over steps, sample grids over time and the diagnostics, with inline CSS and
images as data: URIs (no script, no network). A study folder (``normgan study``) gets its table.md,
results.csv, plots and page from :func:`write_study_outputs` (:mod:`normgan.report.study`), a
comparison folder (``normgan compare --out DIR``) its page from :func:`write_compare_report`
(:mod:`normgan.report.compare`). A search folder already has its own report.html, written by
``normgan search`` (:mod:`normgan.search.outputs`).

Layering: this package sits below the training loop (``train.report`` makes ``Trainer.fit``
import it) and above :mod:`normgan.eval.diagnostics`. The page and plot helpers every report uses
(search and study pages included) are here: :mod:`normgan.report.html` (stylesheet, escaping,
number cells, atomic writes) and :mod:`normgan.report.plots` (figures as PNG bytes).
Attributes load on first use (PEP 562): ``import normgan.report`` does not load matplotlib.
"""

__all__ = [
    "write_run_report",
    "build_run_report",
    "write_study_outputs",
    "load_study",
    "summarize",
    "write_compare_report",
    "classify",
    "read_metrics_file",
]


def __getattr__(name: str):
    if name in ("write_run_report", "build_run_report"):
        from normgan.report import run

        return getattr(run, name)
    if name in ("write_study_outputs", "load_study", "summarize"):
        from normgan.report import study

        return getattr(study, name)
    if name == "write_compare_report":
        from normgan.report import compare

        return compare.write_compare_report
    if name in ("classify", "read_metrics_file"):
        from normgan.report import folders

        return getattr(folders, name)
    raise AttributeError(f"module 'normgan.report' has no attribute {name!r}")
