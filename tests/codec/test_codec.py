"""Tests for the heatmap codec: coordinate conventions, Gaussian targets, DARK decoding and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cephalo.codec import HeatmapCodec


def _random_points(codec: HeatmapCodec, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Uniform random points over the whole input image ``[-0.5, W-0.5] x [-0.5, H-0.5]``, shape ``(*shape, 2)``."""
    g = torch.Generator().manual_seed(seed)
    h, w = codec.input_size
    return torch.rand(*shape, 2, generator=g) * torch.tensor([w, h], dtype=torch.float32) - 0.5


def _error_heatmap_px(codec: HeatmapCodec, decoded: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Euclidean decode error ``(...)`` in heatmap pixels (input pixels / stride)."""
    return (decoded.double() - truth.double()).norm(dim=-1) / codec.stride


# --- construction and coordinates -------------------------------------------------------------------------------


def test_heatmap_size_and_defaults():
    codec = HeatmapCodec((1024, 768), stride=4, sigma=2.0)
    assert codec.heatmap_size == (256, 192)
    assert codec.blur_kernel == 13  # 2 * ceil(3 * sigma) + 1
    assert HeatmapCodec((64, 64), sigma=1.5).blur_kernel == 11
    assert HeatmapCodec((64, 64), blur_kernel=1).blur_kernel == 0
    assert HeatmapCodec((64, 64), blur_kernel=0).blur_kernel == 0
    assert HeatmapCodec((64, 64), stride=1).heatmap_size == (64, 64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_size=(1024, 1000), stride=16), "not divisible by stride 16"),
        (dict(input_size=(1022, 1024), stride=4), "not divisible"),
        (dict(input_size=(64, 64), stride=0), "stride must be >= 1"),
        (dict(input_size=(64, 64), stride=-2), "stride must be >= 1"),
        (dict(input_size=(64, 64), stride=2.5), "stride must be an integer"),
        (dict(input_size=(64, 64), stride=True), "stride must be an integer"),
        (dict(input_size=(64,), stride=4), r"input_size must be \(height, width\)"),
        (dict(input_size=(0, 64), stride=4), "input_size must be positive"),
        (dict(input_size=(64.0, 64), stride=4), "input_size height must be an integer"),
        (dict(input_size=(64, 64), sigma=0.0), "sigma must be a positive number"),
        (dict(input_size=(64, 64), sigma=float("nan")), "sigma must be a positive number"),
        (dict(input_size=(64, 64), refine="soft"), "refine must be 'dark' or 'none'"),
        (dict(input_size=(64, 64), blur_kernel=4), "blur_kernel must be odd"),
        (dict(input_size=(64, 64), blur_kernel=-3), "blur_kernel must be odd"),
    ],
)
def test_bad_arguments_raise_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeatmapCodec(**kwargs)


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 8])
def test_coordinate_mappings_are_exact_inverses(stride):
    codec = HeatmapCodec((48 * stride, 24 * stride), stride=stride)
    x = torch.rand(100, 2, dtype=torch.float64) * 200 - 50
    assert torch.allclose(codec.to_input_coords(codec.to_heatmap_coords(x)), x, rtol=0, atol=1e-12)
    assert torch.allclose(codec.to_heatmap_coords(codec.to_input_coords(x)), x, rtol=0, atol=1e-12)
    # Heatmap pixel j covers input pixels [j*s, (j+1)*s): its centre is j*s + (s-1)/2, its edges j*s - 0.5 ...
    j = torch.arange(10, dtype=torch.float64)
    centres = (j * stride + (stride - 1) / 2)[:, None].expand(10, 2)
    assert torch.equal(codec.to_heatmap_coords(centres), torch.stack((j, j), -1))
    assert torch.equal(codec.to_input_coords(torch.tensor([[-0.5, -0.5]])), torch.tensor([[-0.5, -0.5]]))


def test_coordinate_mapping_dtypes_and_shape_check():
    codec = HeatmapCodec((64, 64), stride=4)
    assert codec.to_heatmap_coords(torch.tensor([[6, 2]])).dtype == torch.float32  # integers -> float32
    assert codec.to_heatmap_coords(np.array([1.5, 1.5])).dtype == torch.float64
    assert codec.to_input_coords(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        codec.to_heatmap_coords(torch.zeros(3, 3))


def test_inside():
    codec = HeatmapCodec((64, 32), stride=4)  # H=64, W=32
    pts = torch.tensor([[[-0.5, -0.5], [31.5, 63.5], [10, 10], [-0.51, 5], [5, 63.6], [32.0, 5], [math.nan, 1],
                         [math.inf, 1]]])
    assert codec.inside(pts).tolist() == [[True, True, True, False, False, False, False, False]]


# --- encode ----------------------------------------------------------------------------------------------------


def test_encode_shape_dtype_device():
    codec = HeatmapCodec((64, 48), stride=4)
    pts = _random_points(codec, (2, 5))
    hm = codec.encode(pts)
    assert hm.shape == (2, 5, 16, 12) and hm.dtype == torch.float32 and hm.device == pts.device
    assert codec.encode(pts.double()).dtype == torch.float64
    assert codec.encode(pts.bfloat16()).dtype == torch.bfloat16
    assert codec.encode(pts.round().long()).dtype == torch.float32
    assert codec.encode(pts[0]).shape == (5, 16, 12)  # any leading dims
    for empty in ((0, 5), (2, 0)):  # empty batches pass through
        maps = codec.encode(torch.zeros(*empty, 2))
        assert maps.shape == (*empty, 16, 12) and codec.decode(maps)[0].shape == (*empty, 2)
    meta = codec.encode(pts.to("meta"))  # no hard-coded device anywhere
    assert meta.device.type == "meta" and meta.shape == (2, 5, 16, 12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_encode_decode_on_cuda():
    codec = HeatmapCodec((1024, 1024), stride=4)
    pts = _random_points(codec, (2, 29)).cuda()
    hm = codec.encode(pts)
    assert hm.device == pts.device
    decoded, conf = codec.decode(hm)
    assert decoded.device == pts.device and conf.device == pts.device
    assert _error_heatmap_px(codec, decoded, pts).max() < 0.05


@pytest.mark.parametrize("stride, sigma", [(1, 2.0), (4, 2.0), (4, 3.0), (2, 1.0)])
def test_encode_peak_symmetry_and_sigma(stride, sigma):
    codec = HeatmapCodec((40 * stride, 32 * stride), stride=stride, sigma=sigma)
    u0, v0 = 13, 21  # on-grid: the centre of heatmap pixel (13, 21)
    pt = codec.to_input_coords(torch.tensor([[[float(u0), float(v0)]]]))
    hm = codec.encode(pt)[0, 0].double()
    assert hm[v0, u0] == 1.0 and hm.max() == 1.0
    for d in range(1, 6):
        expected = math.exp(-(d**2) / (2 * sigma**2))
        for value in (hm[v0, u0 + d], hm[v0, u0 - d], hm[v0 + d, u0], hm[v0 - d, u0]):
            assert value == pytest.approx(expected, rel=1e-6)
        assert hm[v0 + d, u0 + d] == pytest.approx(expected**2, rel=1e-6)
    # Sigma recovered from the second moment of the (untruncated) map.
    ys, xs = torch.meshgrid(torch.arange(hm.shape[0]), torch.arange(hm.shape[1]), indexing="ij")
    var_x = (hm * (xs - u0) ** 2).sum() / hm.sum()
    assert math.sqrt(var_x) == pytest.approx(sigma, rel=1e-3)


def test_encode_off_grid_peak_is_at_the_sub_pixel_position():
    codec = HeatmapCodec((256, 256), stride=4, sigma=2.0)
    uv = torch.tensor([[[30.3, 29.8]]], dtype=torch.float64)
    hm = codec.encode(codec.to_input_coords(uv))[0, 0]
    assert hm[30, 30] == pytest.approx(math.exp(-(0.3**2 + 0.2**2) / 8), rel=1e-12)
    assert hm[30, 30] == hm.max() < 1
    assert hm[30, 28] == pytest.approx(math.exp(-(2.3**2 + 0.2**2) / 8), rel=1e-12)
    half = codec.encode(codec.to_input_coords(torch.tensor([[[30.5, 20.5]]], dtype=torch.float64)))[0, 0]
    assert torch.equal(half[:, 30], half[:, 31]) and torch.equal(half[20], half[21])  # symmetric about x.5
    xs = torch.arange(64, dtype=torch.float64)
    assert float((hm.sum(0) * xs).sum() / hm.sum()) == pytest.approx(30.3, abs=1e-9)  # centroid, x
    assert float((hm.sum(1) * xs).sum() / hm.sum()) == pytest.approx(29.8, abs=1e-9)  # centroid, y


def test_encode_missing_landmarks_give_zero_maps():
    codec = HeatmapCodec((64, 64), stride=4)
    pts = torch.tensor([[[10.0, 20.0], [math.nan, 5.0], [5.0, math.nan], [math.nan, math.nan], [math.inf, 3.0]]])
    hm = codec.encode(pts)
    assert torch.isfinite(hm).all()
    assert hm[0, 0].max() == pytest.approx(1.0, abs=0.1)
    assert (hm[0, 1:] == 0).all()


def _reference_encode(codec: HeatmapCodec, pts: torch.Tensor) -> torch.Tensor:
    """Slow reference: explicit loops, written from the convention (pixel j's centre is at input j*s + (s-1)/2)."""
    s, (hh, wh) = codec.stride, codec.heatmap_size
    out = torch.zeros(*pts.shape[:2], hh, wh, dtype=torch.float64)
    for b in range(pts.shape[0]):
        for k in range(pts.shape[1]):
            x, y = float(pts[b, k, 0]), float(pts[b, k, 1])
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            for j in range(hh):
                for i in range(wh):
                    du = (x - (i * s + (s - 1) / 2)) / s  # distance in heatmap pixels
                    dv = (y - (j * s + (s - 1) / 2)) / s
                    out[b, k, j, i] = math.exp(-(du * du + dv * dv) / (2 * codec.sigma**2))
    return out


def test_encode_batch_matches_loop_reference():
    codec = HeatmapCodec((64, 48), stride=4, sigma=1.5)
    pts = _random_points(codec, (3, 29), seed=1).double()
    pts[1, 7] = math.nan
    pts[2, 3] = torch.tensor([-20.0, 70.0])  # outside: a truncated Gaussian, still rendered
    hm = codec.encode(pts)
    assert hm.shape == (3, 29, 16, 12)
    assert torch.allclose(hm, _reference_encode(codec, pts), rtol=0, atol=1e-12)
    assert torch.allclose(codec.encode(pts.float()).double(), _reference_encode(codec, pts), rtol=0, atol=1e-6)


# --- decode ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("blur_kernel", [None, 0])
def test_round_trip_on_and_off_grid(stride, blur_kernel):
    codec = HeatmapCodec((64 * stride, 48 * stride), stride=stride, sigma=2.0, blur_kernel=blur_kernel)
    # On-grid: heatmap pixel centres, including the border pixels.
    uv = torch.tensor([[[0.0, 0.0], [11.0, 63.0], [20.0, 31.0], [47.0, 5.0]]])
    on_grid = codec.to_input_coords(uv)
    decoded, conf = codec.decode(codec.encode(on_grid))
    assert decoded.dtype == torch.float32 and conf.shape == (1, 4)
    assert _error_heatmap_px(codec, decoded, on_grid).max() < 1e-3
    assert torch.allclose(conf, torch.ones_like(conf))
    # Off-grid: random points over the whole image.
    pts = _random_points(codec, (4, 29), seed=stride)
    decoded, conf = codec.decode(codec.encode(pts))
    assert _error_heatmap_px(codec, decoded, pts).max() < 0.05
    assert (conf > 0.88).all() and (conf <= 1).all()  # peak >= exp(-(0.5^2 + 0.5^2) / 8)


def test_dark_beats_plain_argmax():
    dark = HeatmapCodec((1024, 1024), stride=4, refine="dark")
    plain = HeatmapCodec((1024, 1024), stride=4, refine="none")
    pts = _random_points(dark, (8, 29), seed=3)
    hm = dark.encode(pts)
    err_dark = _error_heatmap_px(dark, dark.decode(hm)[0], pts).mean()
    err_plain = _error_heatmap_px(plain, plain.decode(hm)[0], pts).mean()
    assert 0.3 < err_plain < 0.45  # uniform sub-pixel offsets: mean distance ~0.38 px
    assert err_dark < 0.05 and err_dark < err_plain / 10


def test_realistic_target_1024_stride4():
    codec = HeatmapCodec((1024, 1024), stride=4, sigma=2.0)
    pts = _random_points(codec, (4, 19), seed=4)
    hm = codec.encode(pts)
    assert hm.shape == (4, 19, 256, 256)
    decoded, conf = codec.decode(hm)
    assert decoded.shape == (4, 19, 2) and conf.shape == (4, 19)
    assert _error_heatmap_px(codec, decoded, pts).max() < 0.05


def _reference_dark(codec: HeatmapCodec, hm: torch.Tensor) -> torch.Tensor:
    """Textbook DARK on the whole map: replicate pad, separable blur, log, Taylor step at the argmax (float64)."""
    k, r = codec.blur_kernel, codec.blur_kernel // 2
    taps = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / codec.sigma) ** 2)
    taps /= taps.sum()
    maps = hm.double().flatten(0, 1)[:, None]
    blurred = F.pad(maps, (r, r, r, r), mode="replicate")
    blurred = F.conv2d(F.conv2d(blurred, taps.view(1, 1, 1, k)), taps.view(1, 1, k, 1))[:, 0]
    logs = blurred.clamp_min(1e-10).log().numpy()
    out = []
    for n, m in enumerate(maps[:, 0]):
        y, x = divmod(int(m.argmax()), m.shape[1])
        L = logs[n]
        g = np.array([(L[y, x + 1] - L[y, x - 1]) / 2, (L[y + 1, x] - L[y - 1, x]) / 2])
        dxy = (L[y + 1, x + 1] - L[y + 1, x - 1] - L[y - 1, x + 1] + L[y - 1, x - 1]) / 4
        dxx, dyy = L[y, x + 1] - 2 * L[y, x] + L[y, x - 1], L[y + 1, x] - 2 * L[y, x] + L[y - 1, x]
        hess = np.array([[dxx, dxy], [dxy, dyy]])
        out.append(np.array([x, y]) + np.clip(-np.linalg.solve(hess, g), -1, 1))
    return codec.to_input_coords(torch.tensor(np.array(out))).view(*hm.shape[:2], 2)


def test_decode_matches_full_map_dark_reference_on_noisy_maps():
    """The patch-wise blur equals blurring the whole map (interior peaks), also where the blur matters (noise)."""
    codec = HeatmapCodec((256, 256), stride=4, sigma=2.0)
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(2, 8, 2, generator=g) * 160 + 48  # peaks >= 12 heatmap px from the border
    hm = codec.encode(pts) + 0.05 * torch.randn(2, 8, 64, 64, generator=g)
    decoded, _ = codec.decode(hm)
    assert torch.allclose(decoded.double(), _reference_dark(codec, hm), rtol=0, atol=1e-3)
    # ... and the blur does its job: closer to the truth than the unblurred Taylor step on average.
    unblurred, _ = HeatmapCodec((256, 256), stride=4, blur_kernel=0).decode(hm)
    assert _error_heatmap_px(codec, decoded, pts).mean() < _error_heatmap_px(codec, unblurred, pts).mean()


@pytest.mark.parametrize("blur_kernel", [None, 0])
def test_points_near_and_on_the_border(blur_kernel):
    codec = HeatmapCodec((256, 192), stride=4, sigma=2.0, blur_kernel=blur_kernel)
    h, w = codec.input_size
    edge = torch.tensor([-0.5, 0.0, 0.7, 1.5, 3.0, 6.1, 13.9])  # input px from the low edge
    xs = torch.cat((edge, w - 1 - edge))
    ys = torch.cat((edge, h - 1 - edge))
    pts = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(1, -1, 2)  # corners and edges
    decoded, conf = codec.decode(codec.encode(pts))
    assert torch.isfinite(decoded).all() and torch.isfinite(conf).all()
    assert _error_heatmap_px(codec, decoded, pts).max() < 0.05
    # Outside the image: a truncated Gaussian; the decode stays finite and at most a pixel past the border.
    outside = torch.tensor([[[-30.0, 100.0], [100.0, h + 40.0], [-9.0, -9.0]]])
    decoded, _ = codec.decode(codec.encode(outside))
    uv = codec.to_heatmap_coords(decoded)
    assert torch.isfinite(uv).all() and (uv >= -1).all()
    assert (uv[..., 0] <= codec.heatmap_size[1]).all() and (uv[..., 1] <= codec.heatmap_size[0]).all()


@pytest.mark.parametrize("refine, blur_kernel", [("dark", None), ("dark", 0), ("none", None)])
@pytest.mark.parametrize("value", [0.0, 0.5, -3.0, 1e-30, 7.0])
def test_flat_maps_decode_to_first_pixel_with_their_value(refine, blur_kernel, value):
    codec = HeatmapCodec((64, 48), stride=4, refine=refine, blur_kernel=blur_kernel)
    hm = torch.full((2, 3, 16, 12), value)
    decoded, conf = codec.decode(hm)
    assert torch.equal(decoded, torch.full((2, 3, 2), 1.5))  # centre of heatmap pixel (0, 0) = input (s-1)/2
    assert torch.equal(conf, torch.full((2, 3), value))


def test_missing_landmark_round_trip_is_defined():
    codec = HeatmapCodec((64, 64), stride=4)
    decoded, conf = codec.decode(codec.encode(torch.tensor([[[math.nan, math.nan], [30.0, 30.0]]])))
    assert decoded[0, 0].tolist() == [1.5, 1.5] and conf[0, 0] == 0
    assert conf[0, 1] > 0.9


def test_plateau_takes_the_first_maximum_without_offset():
    codec = HeatmapCodec((64, 64), stride=4)
    hm = torch.zeros(1, 1, 16, 16)
    hm[0, 0, 5:9, 3:11] = 1.0  # a broad plateau: argmax is its first pixel (3, 5); no clear curvature there
    decoded, conf = codec.decode(hm)
    uv = codec.to_heatmap_coords(decoded)[0, 0]
    assert torch.isfinite(uv).all() and conf.item() == 1.0
    assert abs(uv[0] - 3) <= 1 and abs(uv[1] - 5) <= 1


def test_no_nan_for_any_finite_input():
    g = torch.Generator().manual_seed(6)
    for blur_kernel in (None, 0):
        codec = HeatmapCodec((64, 64), stride=4, blur_kernel=blur_kernel)
        maps = [
            torch.randn(4, 5, 16, 16, generator=g),
            torch.randn(4, 5, 16, 16, generator=g) * 1e30,
            torch.rand(4, 5, 16, 16, generator=g) * 3e38,  # near float32 max: the blur may overflow
            torch.rand(4, 5, 16, 16, generator=g) * 1e-38,  # subnormal-ish
            -torch.rand(4, 5, 16, 16, generator=g),
            (torch.rand(4, 5, 16, 16, generator=g) > 0.9).float(),  # spikes, exact ties
        ]
        for hm in maps:
            decoded, conf = codec.decode(hm)
            assert torch.isfinite(decoded).all() and torch.isfinite(conf).all()
            uv = codec.to_heatmap_coords(decoded)
            assert (uv >= -1).all() and (uv <= 16).all()  # offset clamped to one pixel


def test_low_precision_and_autocast():
    codec = HeatmapCodec((1024, 1024), stride=4)
    pts = _random_points(codec, (2, 29), seed=7)
    hm = codec.encode(pts)
    ref, ref_conf = codec.decode(hm)
    for dtype in (torch.bfloat16, torch.float16):
        decoded, conf = codec.decode(hm.to(dtype))
        assert decoded.dtype == torch.float32 and conf.dtype == torch.float32
        assert _error_heatmap_px(codec, decoded, pts).max() < 0.15  # bf16 keeps only ~3 significant digits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        decoded, conf = codec.decode(hm)
        encoded = codec.encode(pts)
    assert torch.equal(decoded, ref) and torch.equal(conf, ref_conf)  # maths stayed float32
    assert encoded.dtype == torch.float32 and torch.equal(encoded, hm)


def test_decode_is_gradient_free():
    codec = HeatmapCodec((64, 64), stride=4)
    hm = codec.encode(torch.tensor([[[20.0, 30.0]]])).requires_grad_()
    decoded, conf = codec.decode(hm * 2)
    assert not decoded.requires_grad and not conf.requires_grad
    with torch.no_grad():
        again, _ = codec.decode(hm)
    assert torch.allclose(decoded, again)


def test_decode_rejects_wrong_heatmap_size():
    codec = HeatmapCodec((64, 64), stride=4)
    with pytest.raises(ValueError, match=r"heatmaps must have shape \(B, K, 16, 16\), got \(1, 2, 32, 32\)"):
        codec.decode(torch.zeros(1, 2, 32, 32))
