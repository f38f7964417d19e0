"""``normgan eval``, ``normgan compare`` and ``normgan diagnose``.

``normgan.cli.build_parser`` registers each from its own module (``add_parser(sub)``); each ``cmd_*`` takes
the parsed ``argparse.Namespace``, prints its report and returns the exit code.  Bad inputs raise
one-line :class:`~normgan.errors.UserError` messages (exit code 2 in ``normgan.cli.main``).

    normgan eval RUN [--n 5000] [--features domain|domain-full|inception|pkg.mod:Class] [--metrics fid,kid,pr,is]
                     [--reference test|train] [--seed 0] [--device cpu] [--checkpoint last.pt] [--no-ema] [--json]
    normgan eval PAIRED_RUN [--split test|val] [--n PAIRS] [--metrics psnr,ssim,l1,lpips,classifier_score] [...]
    normgan compare RUN [RUN ...] [--n 5000] [--features domain] [--out DIR] [...]
    normgan diagnose RUN [--window 10] [--json] [--skip-bad-lines]

``--metrics`` restricts what is printed (the JSON keeps everything computed); ``--split train`` is
refused (a score on the training pairs measures fit, not generalisation); an ``--n`` whose
features would not fit in the available memory is refused before anything is computed
(:func:`normgan.eval.metric_info.check_eval_memory`).  ``compare`` prints one ``compare: …`` line per
stage on stderr and refuses a run given twice; ``diagnose`` refuses a damaged or empty
``metrics.jsonl`` with one line (``--skip-bad-lines`` reads the rest, with one warning).
"""

from __future__ import annotations

import json

from normgan.errors import UserError
from normgan.eval.metric_info import floor_text, format_eval, kid_text  # noqa: F401  (moved to metric_info; re-exported)
from normgan.runtime.paths import expand_path as _path

__all__ = ["cmd_eval", "add_parser", "add_eval_options", "format_eval"]


#: the paired splits ``normgan eval --split`` scores (the training split measures fit, not generalisation)
EVAL_SPLITS = ("test", "val")


def progress(args) -> bool:
    """Progress of the slow steps (classifier training, reference features, scoring) on stderr,
    unless ``--no-progress``: the command says what it is doing even when stderr is a log file."""
    return not getattr(args, "no_progress", False)


def cmd_eval(args) -> int:
    from normgan.eval.paired import run_config, task_evaluation
    from normgan.tasks.info import TASK_INFO

    split = getattr(args, "split", None)
    if split is not None and split not in EVAL_SPLITS:
        why = " (a score on the pairs G was trained on says nothing about generalisation)" if split == "train" else ""
        raise UserError(f"--split: {split!r} is not a split normgan eval scores{why}; use test (the default) or val")
    checkpoint = getattr(args, "checkpoint", "last.pt")
    task = run_config(_path(args.run), checkpoint).task
    res = task_evaluation(task).score_run(
        _path(args.run),
        n=args.n,
        default_n=DEFAULT_N,
        features=getattr(args, "features", "domain"),
        metrics=args.metrics,
        reference=getattr(args, "reference", "test"),
        split=split,
        checkpoint=checkpoint,
        ema=not getattr(args, "no_ema", False),
        device=args.device or "cpu",
        seed=args.seed,
        cache_dir=_path(getattr(args, "cache_dir", None)),
        progress=progress(args),
    )
    print(
        json.dumps(res, indent=2, sort_keys=True)
        if getattr(args, "json", False)
        else TASK_INFO.get(task).format_result(res, metrics=args.metrics)
    )
    return 0


#: generated samples of ``normgan eval`` / ``compare`` on an unconditional run when ``--n`` is not given
DEFAULT_N = 5000


def add_eval_options(p, *, paired_too: bool = False) -> None:
    help_n = f"generated samples per run (default {DEFAULT_N}; compare runs at equal N)"
    if paired_too:
        help_n += "; for a paired run, pairs of the split to score (default all; fewer: a subset drawn with --seed)"
    p.add_argument("--n", type=int, default=None if paired_too else DEFAULT_N, help=help_n)
    p.add_argument(
        "--features",
        default="domain",
        help="domain (offline classifier of the run's training split, default), domain-full (the classifier of "
        "the data source's default split, for runs on a small split), inception, or package.module:ClassName",
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated subset of fid,kid,pr,is (default all); for a paired run "
        "of psnr,ssim,l1,lpips,classifier_score (default all that apply)",
    )
    p.add_argument("--reference", default="test", help="test (the held-out split, default) or train")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and of the reference subset (default 0)")
    p.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    p.add_argument("--checkpoint", default="last.pt", help="checkpoint file name in RUN/checkpoints (default last.pt)")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw generator instead of its EMA copy")
    p.add_argument(
        "--cache-dir", default=None, help="domain classifier cache (default $NORMGAN_CACHE or ~/.cache/normgan)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress lines or bars on stderr")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="FID/KID/precision-recall/IS of a run against its held-out split "
        "(paired runs: PSNR/SSIM/L1/LPIPS/classifier score on the test split)",
    )
    p.add_argument("run", help="run folder")
    add_eval_options(p, paired_too=True)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--split", default=None, help="paired runs: test (default) or val")
    p.set_defaults(func=cmd_eval)
