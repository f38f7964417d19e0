"""Wall time of a domain-feature evaluation of 10,000 generated 32-px images, generation included.

    python benchmarks/bench_eval.py [--run RUN] [--n 10000] [--metrics fid,kid,pr,is] [--cache-dir DIR]

Without ``--run`` the generator is a freshly initialised default generator of
``normgan/configs/mnist.yaml`` (its scores are meaningless; only the time matters).  The domain
classifier is trained (or loaded from the cache) first and its time is reported separately as
``classifier_seconds``; ``eval_seconds`` covers loading the reference split, generating ``n``
images, extracting features and computing every metric.  Prints one JSON object.
Target: ``eval_seconds`` <= 60 on CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a run folder (default: a fresh generator from configs/mnist.yaml)")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--metrics", default="fid,kid,pr,is")
    ap.add_argument(
        "--cache-dir", default=None, help="domain classifier cache (default $NORMGAN_CACHE or ~/.cache/normgan)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()

    from normgan.config import load_config
    from normgan.eval.evaluation import (
        build_extractor,
        check_eval_args,
        default_cache_dir,
        evaluate_generator,
        reference_dataset,
    )
    from normgan.models import build_generator

    metrics = check_eval_args(n=args.n, metrics=args.metrics)
    if args.run:
        from normgan.inference.sample import load_generator

        G, cfg = load_generator(args.run, device=args.device)
    else:
        cfg = load_config("configs/mnist.yaml")
        torch.manual_seed(0)
        G = build_generator(cfg.model.generator, resolution=cfg.data.resolution, channels=1).to(args.device).eval()

    t0 = time.perf_counter()
    extractor = build_extractor(
        "domain",
        cfg,
        device=args.device,
        cache_dir=default_cache_dir(args.cache_dir),
        heldout=reference_dataset(cfg, "test"),
    )
    classifier_wall = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = evaluate_generator(
        G, cfg, n=args.n, metrics=metrics, device=args.device, extractor=extractor, batch_size=args.batch_size
    )
    eval_wall = time.perf_counter() - t0

    # the parts: generation alone, then metrics without generation are eval - generation - features
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, args.n, args.batch_size):
            G(torch.randn(min(args.batch_size, args.n - s), G.z_dim, device=args.device))
    gen_wall = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "n": args.n,
                "resolution": cfg.data.resolution,
                "features": "domain",
                "metrics": list(metrics),
                "generator": args.run or "fresh configs/mnist.yaml generator",
                "eval_seconds": round(eval_wall, 2),
                "generation_only_seconds": round(gen_wall, 2),
                "classifier_from_cache": bool(getattr(extractor, "from_cache", False)),
                "classifier_seconds": round(
                    classifier_wall
                    if not getattr(extractor, "from_cache", False)
                    else float(extractor.train_seconds or 0.0),
                    2,
                ),
                "classifier_load_seconds": round(classifier_wall, 2)
                if getattr(extractor, "from_cache", False)
                else None,
                "domain_heldout_accuracy": res.get("domain_heldout_accuracy"),
                "n_real": res["n_real"],
                "fid": res.get("fid"),
                "fid_floor": res.get("fid_floor"),
                "target_seconds": 60,
                "within_target": eval_wall <= 60,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
