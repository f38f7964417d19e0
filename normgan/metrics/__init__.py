"""Sample-quality metrics: FID, KID, precision/recall, Inception Score.

    from normgan.metrics import build_feature_extractor, evaluate
    from normgan.data import load_dataset

    train = load_dataset(name="mnist5k", split="train")
    test = load_dataset(name="mnist5k", split="test")
    ext = build_feature_extractor("domain", data=train, cache_dir="~/.cache/normgan", device="cpu")
    scores = evaluate(sample_fn=lambda b: G(torch.randn(b, 64)), reference=train, extractor=ext, n=2000)

Layers: :mod:`~normgan.metrics.functional` (pure functions of feature arrays),
:mod:`~normgan.metrics.features` (extractors + ``FEATURES`` registry),
:mod:`~normgan.metrics.domain` (the offline domain classifier),
:mod:`~normgan.metrics.evaluate` (a sampler against a real reference).
Paired outputs: :mod:`~normgan.metrics.paired` (PSNR, SSIM, L1, sharpness, LPIPS, ... of paired image-to-image outputs).
"""

from normgan.metrics.domain import DomainClassifier, domain_classifier, load_or_train, train_domain_classifier
from normgan.metrics.evaluate import ReferenceScorer, evaluate, generated_features, real_features
from normgan.metrics.features import FEATURES, build_feature_extractor, inception_weights_path
from normgan.metrics.functional import fid_from_features, inception_score, kid_from_features, precision_recall
from normgan.metrics.paired import (
    PairedScores,
    classifier_score,
    dropout_diversity,
    l1_error,
    lpips_or_none,
    lpips_weights_path,
    make_lpips,
    psnr,
    sharpness,
    sharpness_ratio,
    ssim,
)

__all__ = [
    "FEATURES",
    "ReferenceScorer",
    "DomainClassifier",
    "build_feature_extractor",
    "domain_classifier",
    "evaluate",
    "fid_from_features",
    "generated_features",
    "inception_score",
    "inception_weights_path",
    "kid_from_features",
    "load_or_train",
    "precision_recall",
    "real_features",
    "train_domain_classifier",
    # paired image-to-image metrics (normgan.metrics.paired)
    "PairedScores",
    "classifier_score",
    "dropout_diversity",
    "l1_error",
    "lpips_or_none",
    "lpips_weights_path",
    "make_lpips",
    "psnr",
    "sharpness",
    "sharpness_ratio",
    "ssim",
]
