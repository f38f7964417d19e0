"""Feature extractors for the sample-quality metrics, and their registry.

An extractor is an ``nn.Module`` mapping float images in ``[-1, 1]`` of shape ``(B, C, H, W)``
to ``(B, d)`` features, with attributes ``name`` (str) and ``num_features`` (int, or ``None`` if
unknown), and optionally ``logits(x)`` (for the Inception Score) and
``features_and_logits(x)`` (both in one pass).

Specs accepted by :func:`build_feature_extractor`:

* ``"domain"``: :class:`~normgan.metrics.domain.DomainClassifier` trained on ``data`` (the TRAIN
  split, with labels) and cached in ``cache_dir``; offline, dataset-specific.
* ``"domain-full"``: the same classifier, named ``domain-full``, for ``data`` = the data source's
  DEFAULT training split (data.holdout 0.1) rather than the run's: the classifier (and cache file)
  every default run of that source uses.  :func:`normgan.eval.evaluation.build_extractor` loads that
  split from the run's config; called directly, pass it as ``data``.
* ``"inception"``: the standard FID InceptionV3 of ``torch-fidelity`` (the network torchmetrics
  uses), 2048-d pool3 features and 1008-way unbiased logits.  Never downloads: the weights file
  must already be in ``$TORCH_HOME/hub/checkpoints``.
* ``"package.module:ClassName"`` or ``"package.module:factory"``: any ``nn.Module`` built with no
  arguments.
"""

from __future__ import annotations

import importlib
import os

import torch
from torch import Tensor, nn

from normgan.errors import ConfigError, UserError
from normgan.registry import Registry

__all__ = [
    "FEATURES",
    "build_feature_extractor",
    "InceptionFeatures",
    "inception_weights_path",
    "INCEPTION_WEIGHTS_FILE",
    "import_feature_extractor",
]

#: Maps ``--features`` names to factories called as ``factory(*, data, cache_dir, device, **options)``.
FEATURES = Registry("feature extractor")

#: File name ``torch-fidelity`` (and so torchmetrics) loads the FID Inception weights from, via
#: ``torch.hub.load_state_dict_from_url``, i.e. from ``torch.hub.get_dir()/checkpoints/``.
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE


def inception_weights_path() -> str:
    """``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (via ``torch.hub.get_dir()``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", INCEPTION_WEIGHTS_FILE)


class InceptionFeatures(nn.Module):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` behind the extractor interface.

    Images in ``[-1, 1]`` are quantized to uint8 (``round((x + 1) · 127.5)``), grey images are
    repeated to 3 channels, and torch-fidelity resizes to 299 px like the TF original.
    """

    name = "inception"
    num_features = 2048

    def __init__(self, *, weights_path: str) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=weights_path
        )
        self.net.eval()

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        feats, logits = self.net(x)
        return feats.reshape(x.shape[0], -1), logits.reshape(x.shape[0], -1)

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[0]

    def logits(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]

    def train(self, mode: bool = True) -> "InceptionFeatures":  # always frozen
        return super().train(False)


@FEATURES.register("inception")
def _build_inception(*, data=None, cache_dir=None, device="cpu", **_) -> nn.Module:
    path = inception_weights_path()
    try:
        import torch_fidelity  # noqa: F401

        have_fidelity = True
    except ImportError:
        have_fidelity = False
    have_weights = os.path.isfile(path)
    if not (have_fidelity and have_weights):
        problems = []
        fixes = []
        if not have_fidelity:
            problems.append("torch-fidelity is not installed")
            fixes.append("pip install torch-fidelity")
        if not have_weights:
            problems.append(f"the FID Inception weights are missing at {path}")
            fixes.append(f"copy {INCEPTION_WEIGHTS_FILE} (from {INCEPTION_WEIGHTS_URL}) to that path")
        raise UserError(
            f"--features inception is unavailable offline: {' and '.join(problems)}; "
            f"{', and '.join(fixes)}, or use --features domain"
        )
    return InceptionFeatures(weights_path=path).to(device).eval()


@FEATURES.register("domain")
def _build_domain(
    *, data=None, cache_dir=None, device="cpu", heldout=None, epochs=None, seed=0, progress=None, **_
) -> nn.Module:
    from normgan.metrics import domain

    if data is None:
        raise UserError("--features domain needs the dataset to train its classifier on; pass the training data")
    if heldout is None:
        heldout = lambda: _default_heldout(data)  # noqa: E731  (loaded only if training is needed)
    kw = {} if epochs is None else {"epochs": epochs}
    return domain.load_or_train(
        data, heldout=heldout, cache_dir=cache_dir, seed=seed, device=device, progress=progress, **kw
    )


@FEATURES.register("domain-full")
def _build_domain_full(**options) -> nn.Module:
    """The ``domain`` classifier of ``data`` (the source's default training split), named ``domain-full``."""
    net = _build_domain(**options)
    net.name = "domain-full"
    return net


def _default_heldout(data):
    """The TEST split of a built-in dataset named like ``data`` (same resolution/channels), else None."""
    try:
        from normgan.data import load_dataset

        test = load_dataset(name=data.name, resolution=data.resolution, channels=data.channels, split="test")
    except Exception:
        return None
    return test if test.labels is not None else None


def import_feature_extractor(spec: str) -> nn.Module:
    """Build ``package.module:ClassName`` (a no-argument ``nn.Module`` class) or ``package.module:factory``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(
            f"--features {spec!r} is not a name or an import path; "
            "use domain, domain-full, inception or package.module:ClassName"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"--features {spec!r}: cannot import module {module_name!r} ({exc}); check the path and PYTHONPATH"
        ) from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(
                f"--features {spec!r}: module {module_name!r} has no attribute {attr!r}; check the name after ':'"
            ) from None
    if not callable(obj):
        raise UserError(
            f"--features {spec!r}: {attr!r} is not a class or function; point to an nn.Module class or a factory"
        )
    try:
        net = obj()
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(
            f"--features {spec!r}: calling {attr}() failed ({type(exc).__name__}: {msg}); it must build with no arguments"
        ) from None
    if not isinstance(net, nn.Module):
        raise UserError(
            f"--features {spec!r}: {attr}() returned {type(net).__name__}, not a torch.nn.Module; return the feature network"
        )
    if not isinstance(getattr(net, "name", None), str):
        net.name = spec
    if not hasattr(net, "num_features"):
        net.num_features = None
    return net


def build_feature_extractor(spec: str, *, data=None, cache_dir=None, device="cpu", **options) -> nn.Module:
    """Build the extractor named by ``spec`` on ``device``, in eval mode.

    Args:
        spec: a :data:`FEATURES` name (``"domain"``, ``"domain-full"``, ``"inception"``) or an import path
            ``package.module:ClassName`` / ``package.module:factory``.
        data: the TRAIN split (``ImageData``) the ``domain`` classifier is trained on; ignored
            by the other extractors.
        cache_dir: where ``domain`` caches its classifier (``None``: no cache).
        device: torch device.
        options: extractor-specific keywords (``domain``, ``domain-full``: ``heldout`` ImageData, ``epochs``,
            ``seed``, ``progress``: a line and a bar on stderr while it trains; the others ignore them).

    Raises:
        UserError / ConfigError: one-line messages for unknown names, bad import paths, missing
        weights or unlabelled data.
    """
    if ":" in spec:
        net = import_feature_extractor(spec)
    else:
        try:
            factory = FEATURES.get(spec, key="features")
        except ConfigError as exc:
            raise ConfigError(f"{exc}, or an import path package.module:ClassName") from None
        net = factory(data=data, cache_dir=cache_dir, device=device, **options)
    return net.to(device).eval()
