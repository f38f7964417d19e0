"""normgan.metrics.paired against independent computations (scikit-image, scipy, numpy, closed forms).

Tolerances (two-sided):

* PSNR vs scikit-image: 1e-5 dB.  Same formula in float64, but torchmetrics converts ln to log10 with
  the float32 constant ``10 / ln(10)``: a relative error of about 5e-8 (measured 8e-7 dB at 17 dB).
* SSIM vs a numpy/scipy SSIM map over the whole image with the same padding: 1e-10.  SSIM vs
  scikit-image: 0.01 on 64 x 64 images (largest difference measured: 0.004), because
  scikit-image averages only the interior (a 5-px border, about 30 % of a 64 x 64 image, is
  cropped) while torchmetrics averages the whole map, reflect-padded; on the interior the two agree
  to 1e-10, which the reference test checks.
* l1_error, sharpness, dropout_diversity vs numpy: 1e-12; closed forms: 1e-12.
"""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torch import nn

from normgan.errors import UserError
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

ALEX_FILE = "alexnet-owt-7be5be79.pth"  # basename of torchvision's AlexNet_Weights.IMAGENET1K_V1 url


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _pairs(c, h=64, seed=0):
    """(name, outputs, targets) in [-1, 1]: random images and smooth structured ones, with noise."""
    g = _gen(seed)
    t_rand = torch.rand(3, c, h, h, generator=g, dtype=torch.float64) * 2 - 1
    o_rand = (t_rand + 0.3 * torch.randn(t_rand.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, h, dtype=torch.float64), indexing="ij"
    )
    phase = torch.arange(3 * c, dtype=torch.float64).reshape(3, c, 1, 1)
    t_struct = 0.8 * torch.sin(6 * xx + phase) * torch.cos(4 * yy)
    o_struct = (t_struct + 0.1 * torch.randn(t_struct.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    return [("random", o_rand, t_rand), ("structured", o_struct, t_struct)]


def _unit_np(x):
    return ((x.double() + 1) / 2).numpy()


# ------------------------------------------------------------------------------------------ PSNR


@pytest.mark.parametrize("c", [1, 3])
def test_psnr_matches_scikit_image(c):
    for name, o, t in _pairs(c):
        got = psnr(o, t)
        assert got.shape == (3,) and got.dtype == torch.float64
        u, v = _unit_np(o), _unit_np(t)
        want = [sk_psnr(v[i], u[i], data_range=1) for i in range(3)]
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5, err_msg=name)


def test_psnr_known_value_and_identical_images():
    t = torch.zeros(2, 1, 8, 8)
    o = t.clone()
    o[0] += 0.2  # 0.1 on the [0, 1] scale: MSE 0.01 -> 20 dB
    got = psnr(o, t)
    assert got[0].item() == pytest.approx(20.0, abs=1e-5)
    assert got[1].item() == float("inf")


# ------------------------------------------------------------------------------------------ SSIM


def _ssim_map(a, b, mode):
    """SSIM map of two [0, 1] 2-D images: Gaussian σ = 1.5 truncated at 3.5 σ (11 taps), population moments."""
    f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode=mode)  # noqa: E731
    mx, my = f(a), f(b)
    vx, vy, cxy = f(a * a) - mx * mx, f(b * b) - my * my, f(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


@pytest.mark.parametrize("c", [1, 3])
def test_ssim_matches_scikit_image(c):
    for name, o, t in _pairs(c):
        got = ssim(o, t)
        assert got.shape == (3,)
        u, v = _unit_np(o), _unit_np(t)
        kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
        if c == 1:
            want = [sk_ssim(v[i, 0], u[i, 0], **kw) for i in range(3)]
        else:
            want = [sk_ssim(v[i], u[i], channel_axis=0, **kw) for i in range(3)]
        # border handling differs (module docstring): 0.01 holds with margin at 64 x 64 (measured <= 0.004)
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=0.01, err_msg=name)


@pytest.mark.parametrize("c", [1, 3])
def test_ssim_matches_a_full_image_reference_whose_interior_is_scikit_image(c):
    """Exact check: torchmetrics averages the SSIM map over the whole image, reflect-padded without
    repeating the edge pixel (scipy mode "mirror"); scikit-image averages the same map's interior."""
    for name, o, t in _pairs(c, h=32, seed=1):
        got = ssim(o, t).numpy()
        u, v = _unit_np(o), _unit_np(t)
        full = np.array([np.mean([_ssim_map(u[i, k], v[i, k], "mirror") for k in range(c)]) for i in range(3)])
        np.testing.assert_allclose(got, full, rtol=0, atol=1e-10, err_msg=name)
        # the reference itself: its interior (5-px border cropped) is scikit-image's value
        interior = np.array(
            [np.mean([_ssim_map(u[i, k], v[i, k], "mirror")[5:-5, 5:-5] for k in range(c)]) for i in range(3)]
        )
        kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
        sk = [
            sk_ssim(v[i, 0], u[i, 0], **kw) if c == 1 else sk_ssim(v[i], u[i], channel_axis=0, **kw) for i in range(3)
        ]
        np.testing.assert_allclose(interior, sk, rtol=0, atol=1e-10, err_msg=name)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 16, 16, generator=_gen()) * 2 - 1
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- L1 and sharpness


def test_l1_error_matches_numpy():
    o = torch.rand(4, 3, 9, 7, generator=_gen(2)) * 2 - 1
    t = torch.rand(4, 3, 9, 7, generator=_gen(3)) * 2 - 1
    want = np.abs(o.double().numpy() - t.double().numpy()).reshape(4, -1).mean(1)
    np.testing.assert_allclose(l1_error(o, t).numpy(), want, rtol=0, atol=1e-12)
    assert l1_error(torch.full((1, 1, 4, 4), 0.5), torch.full((1, 1, 4, 4), -0.5)).item() == pytest.approx(
        1.0, abs=1e-12
    )


def _np_sharpness(x):
    u = _unit_np(x)
    dx = np.diff(u, axis=3)[:, :, :-1, :]  # u[h, w+1] - u[h, w] on rows 0..H-2
    dy = np.diff(u, axis=2)[:, :, :, :-1]  # u[h+1, w] - u[h, w] on columns 0..W-2
    return np.sqrt(dx**2 + dy**2).reshape(len(u), -1).mean(1)


@pytest.mark.parametrize("c", [1, 3])
def test_sharpness_matches_numpy(c):
    x = torch.rand(3, c, 10, 13, generator=_gen(4)) * 2 - 1
    got = sharpness(x)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), _np_sharpness(x), rtol=0, atol=1e-12)


def test_sharpness_closed_forms():
    w = torch.arange(8, dtype=torch.float64)
    ramp = (2 * 0.05 * w - 1).expand(1, 1, 8, 8)  # u = 0.05 w: dx = 0.05, dy = 0
    assert sharpness(ramp).item() == pytest.approx(0.05, abs=1e-12)
    diag = (2 * 0.05 * (w[:, None] + w[None, :]) - 1)[None, None]  # dx = dy = 0.05
    assert sharpness(diag).item() == pytest.approx(0.05 * 2**0.5, abs=1e-12)
    assert sharpness(torch.full((1, 3, 5, 5), 0.3)).item() == 0.0


def test_sharpness_ratio_of_self_is_one_and_of_a_blur_below_one():
    x = torch.rand(4, 3, 16, 16, generator=_gen(5)) * 2 - 1
    assert sharpness_ratio(x, x) == pytest.approx(1.0, abs=1e-12)
    blurred = nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    r = sharpness_ratio(blurred, x)
    assert 0 < r < 0.8
    want = _np_sharpness(blurred).mean() / _np_sharpness(x).mean()
    assert r == pytest.approx(want, abs=1e-12)


# ------------------------------------------------------------------------------------- diversity


def test_dropout_diversity_matches_numpy():
    s = torch.rand(5, 3, 1, 6, 6, generator=_gen(6)) * 2 - 1
    want = _unit_np(s).std(axis=0, ddof=0).mean()
    assert dropout_diversity(s) == pytest.approx(want, abs=1e-12)


def test_dropout_diversity_of_identical_samples_is_zero_and_of_plus_minus_a_is_a():
    x = torch.rand(2, 3, 8, 8, generator=_gen(7)) * 2 - 1
    assert dropout_diversity(x.expand(4, -1, -1, -1, -1)) == pytest.approx(0.0, abs=1e-12)
    a = 0.15
    m = a + (1 - 2 * a) * torch.rand(
        2, 3, 8, 8, generator=_gen(8), dtype=torch.float64
    )  # [0, 1] scale, m ± a in [0, 1]
    samples = torch.stack([m + a, m - a]) * 2 - 1  # to [-1, 1]
    assert dropout_diversity(samples) == pytest.approx(a, abs=1e-12)


# ------------------------------------------------------------------------------------ classifier


def _mean_sign_classifier(c, h):
    """Linear classifier: logit_0 = mean pixel value, logit_1 = 0.  Predicts 0 iff mean >= 0
    (ties go to index 0); far from 0 on the constant images used here."""
    lin = nn.Linear(c * h * h, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = 1.0 / (c * h * h)
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin)


def _constant_images(values, c=1, h=4):
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1, 1).expand(-1, c, h, h).contiguous()


def test_classifier_score_with_a_hand_made_linear_classifier():
    values = [-0.9, -0.5, -0.2, 0.1, 0.3, 0.7, 0.8, -0.4, 0.6, -0.7, 0.2]
    labels = [0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1]
    # predicted class is 0 exactly when the value is positive: count agreements in closed form
    want = sum((v > 0) == (y == 0) for v, y in zip(values, labels)) / len(values)
    assert want == pytest.approx(7 / 11)
    net = _mean_sign_classifier(3, 4)
    x = _constant_images(values, c=3)
    y = torch.tensor(labels)
    for bs in (500, 3, 1):
        assert classifier_score(net, x, y, batch_size=bs) == pytest.approx(want, abs=1e-15)
    assert classifier_score(net, x, 1 - y) == pytest.approx(1 - want, abs=1e-15)


class _FeaturesAndLogits(nn.Module):
    """Like normgan's DomainClassifier: forward returns features, logits(x) returns logits.  In
    training mode the logits are negated, so a score taken in training mode is wrong."""

    def __init__(self):
        super().__init__()
        self.net = _mean_sign_classifier(1, 4)

    def forward(self, x):
        return torch.zeros(x.shape[0], 7)  # features, not logits: all-class-0 if used as logits

    def logits(self, x):
        out = self.net(x)
        return -out if self.training else out


def test_classifier_score_uses_the_logits_method_in_eval_mode_and_tuples():
    values, labels = [-0.5, 0.5, 0.25, -0.25, -0.75], [1, 0, 0, 1, 1]  # all correct in eval mode
    x, y = _constant_images(values), torch.tensor(labels)
    # wrong calls would give: forward's zeros -> class 0 -> 2/5; training-mode logits -> 0/5
    model = _FeaturesAndLogits().train()
    assert classifier_score(model, x, y) == 1.0
    assert model.training  # training mode restored
    assert classifier_score(model.eval(), x, y) == 1.0 and not model.training

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mean_sign_classifier(1, 4)

        def forward(self, x):
            return torch.zeros(x.shape[0], 7), self.net(x)

    assert classifier_score(Pair(), x, y) == 1.0


def test_classifier_score_with_normgan_domain_classifier():
    from normgan.metrics.domain import DomainClassifier

    torch.manual_seed(0)
    model = DomainClassifier(channels=1, num_classes=3, resolution=8).eval()
    x = torch.rand(10, 1, 8, 8, generator=_gen(9)) * 2 - 1
    y = torch.randint(0, 3, (10,), generator=_gen(10))
    with torch.no_grad():
        want = float((model.head(model.body(x)).argmax(1) == y).double().mean())
    assert classifier_score(model, x, y, batch_size=4) == pytest.approx(want)


# ---------------------------------------------------------------------------------- PairedScores


def test_paired_scores_over_two_batches_equal_the_per_image_metrics_of_the_concatenation():
    g = _gen(11)
    t = torch.rand(7, 1, 16, 16, generator=g) * 2 - 1
    o = (t + 0.2 * torch.randn(t.shape, generator=g)).clamp(-1, 1)
    o[2] = t[2]  # identical pair: PSNR +inf, excluded from the PSNR mean
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    seen_shapes = []

    def per_image_lpips(a, b):
        seen_shapes.append(tuple(a.shape))
        return (a - b).square().mean((1, 2, 3))

    classifier = _mean_sign_classifier(1, 16)
    scores = PairedScores(lpips=per_image_lpips, classifier=classifier)
    scores.update(o[:3], t[:3], y[:3])
    scores.update(o[3:], t[3:], y[3:])
    got = scores.compute()

    p = psnr(o, t)
    assert torch.isinf(p).sum() == 1
    assert got["psnr"] == pytest.approx(float(p[torch.isfinite(p)].mean()), abs=1e-9)
    assert got["ssim"] == pytest.approx(float(ssim(o, t).mean()), abs=1e-12)
    assert got["l1"] == pytest.approx(float(l1_error(o, t).mean()), abs=1e-12)
    assert got["sharpness_ratio"] == pytest.approx(sharpness_ratio(o, t), abs=1e-12)
    assert got["classifier_score"] == pytest.approx(classifier_score(classifier, o, y), abs=1e-15)
    assert got["lpips"] == pytest.approx(float((o - t).double().square().mean((1, 2, 3)).mean()), abs=1e-7)
    assert got["n"] == 7
    assert seen_shapes == [(3, 3, 16, 16), (4, 3, 16, 16)]  # grey repeated to 3 channels

    # a module returning the batch mean (like make_lpips') gives the same per-image mean
    mean_lpips = PairedScores(lpips=lambda a, b: per_image_lpips(a, b).mean())
    mean_lpips.update(o[:3], t[:3])
    mean_lpips.update(o[3:], t[3:])
    res = mean_lpips.compute()
    assert res["lpips"] == pytest.approx(got["lpips"], abs=1e-7)
    assert set(res) == {"psnr", "ssim", "l1", "sharpness_ratio", "lpips", "n"}


def test_paired_scores_keys_and_all_identical_psnr():
    x = torch.rand(3, 3, 12, 12, generator=_gen(12)) * 2 - 1
    s = PairedScores()
    s.update(x, x)
    got = s.compute()
    assert set(got) == {"psnr", "ssim", "l1", "sharpness_ratio", "n"}
    assert got["psnr"] == float("inf") and got["l1"] == 0.0 and got["n"] == 3
    with pytest.raises(ValueError):
        PairedScores().compute()


# ------------------------------------------------------------------------------------------ LPIPS


def _forbid(calls, name):
    def f(*args, **kwargs):
        calls.append(name)
        raise AssertionError(f"network access attempted: {name}")

    return f


@pytest.fixture
def no_network(monkeypatch):
    """Fail (and record) any download, URL opening or socket connection."""
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", _forbid(calls, "torch.hub.download_url_to_file"))
    monkeypatch.setattr(torch.hub, "urlopen", _forbid(calls, "torch.hub.urlopen"))
    monkeypatch.setattr(urllib.request, "urlopen", _forbid(calls, "urllib.request.urlopen"))
    monkeypatch.setattr(socket.socket, "connect", _forbid(calls, "socket.connect"))
    monkeypatch.setattr(socket, "create_connection", _forbid(calls, "socket.create_connection"))
    return calls


@pytest.fixture
def no_fetch(no_network, monkeypatch):
    """``no_network``, and also no call of ``load_state_dict_from_url`` at all (torch.hub's, and the
    copy torchvision's weights enums call): with the weights missing, nothing may even try."""
    import torchvision.models._api as tv_api

    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", _forbid(no_network, "torch.hub.load_state_dict_from_url")
    )
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", _forbid(no_network, "torchvision load_state_dict_from_url"))
    return no_network


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    return tmp_path


def test_lpips_weights_path_follows_torch_home(torch_home):
    import torchvision

    assert lpips_weights_path() == torch_home / "hub" / "checkpoints" / ALEX_FILE
    assert torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.endswith("/" + ALEX_FILE)


def test_make_lpips_without_weights_raises_one_line_and_never_downloads(torch_home, no_fetch):
    with pytest.raises(UserError) as info:
        make_lpips(net="alex")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(torch_home / "hub" / "checkpoints" / ALEX_FILE) in msg
    assert "IMAGENET1K_V1" in msg and "TORCH_HOME" in msg
    module, why = lpips_or_none()
    assert module is None and why == msg
    assert no_fetch == []


def _write_fake_alexnet_weights(path):
    """A random AlexNet state dict at ``path``; the large classifier layers as zero tensors expanded
    from one element, so the file stays small (LPIPS uses only ``features``)."""
    import torchvision

    state = torchvision.models.alexnet(weights=None).state_dict()
    for k, v in state.items():
        if k.startswith("classifier."):
            state[k] = torch.zeros(1).expand(v.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_make_lpips_builds_from_weights_on_disk_without_network(torch_home, no_network):
    """The offline path with a stand-in backbone file: built from disk, LPIPS(x, x) = 0, PairedScores
    averages per image and handles grey images."""
    _write_fake_alexnet_weights(lpips_weights_path("alex"))
    module, why = lpips_or_none(net="alex")
    assert why is None and module is not None
    assert no_network == []
    g = _gen(13)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert float(module(x, x)) == pytest.approx(0.0, abs=1e-6)
    grey_t = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    grey_o = (grey_t + 0.5 * torch.randn(grey_t.shape, generator=g)).clamp(-1, 1)
    s = PairedScores(lpips=module)
    s.update(grey_o[:1], grey_t[:1])
    s.update(grey_o[1:], grey_t[1:])
    rgb = lambda z: z.expand(-1, 3, -1, -1)  # noqa: E731
    want = np.mean([float(module(rgb(grey_o[i : i + 1]), rgb(grey_t[i : i + 1]))) for i in range(3)])
    assert s.compute()["lpips"] == pytest.approx(want, rel=1e-5, abs=1e-7)


_HAVE_ALEXNET = lpips_weights_path("alex").is_file()


@pytest.mark.skipif(
    not _HAVE_ALEXNET,
    reason=f"the torchvision AlexNet weights are not on this machine "
    f"({lpips_weights_path('alex')}); real-LPIPS behaviour is checked only where they are",
)
def test_real_lpips_is_zero_on_identical_images_and_grows_with_noise(no_network):
    module = make_lpips(net="alex")
    g = _gen(14)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    x = (0.8 * torch.sin(8 * xx) * torch.cos(5 * yy)).expand(2, 3, 64, 64).contiguous()
    noise = torch.randn(x.shape, generator=g)
    vals = [float(module(x, x))] + [float(module((x + s * noise).clamp(-1, 1), x)) for s in (0.05, 0.2, 0.6)]
    assert vals[0] == pytest.approx(0.0, abs=1e-6)
    assert vals[0] < vals[1] < vals[2] < vals[3], vals
    assert no_network == []
