import numpy as np
import pytest
import torch

from cephalo.preprocessing.letterbox import Letterbox


@pytest.mark.parametrize(
    "source, target", [((2400, 1935), (1024, 1024)), ((1935, 2400), (1024, 1024)), ((100, 100), (64, 64)),
                       ((300, 200), (1024, 512)), ((37, 1001), (256, 256)), ((50, 40), (1024, 1024))]
)
def test_round_trip_exact(source, target):
    lb = Letterbox(source, target)
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 1, (100, 2)) * np.array(source[::-1])
    back = lb.inverse(lb.forward(points))
    assert np.abs(back - points).max() < 1e-4
    t = torch.tensor(points)
    assert torch.allclose(lb.inverse(lb.forward(t)), t, atol=1e-4)


def test_geometry_keeps_aspect_and_centres():
    lb = Letterbox((2400, 1935), (1024, 1024))
    rh, rw = lb.resized_size
    assert rh == 1024 and rw == round(1935 * 1024 / 2400)
    px, py = lb.pad
    assert py == 0 and px == (1024 - rw) // 2
    sx, sy = lb.scale
    assert abs(sx - sy) < 1e-3  # aspect ratio kept up to rounding of the size
    # the image corners map onto the content's corners
    corners = np.array([[-0.5, -0.5], [1935 - 0.5, 2400 - 0.5]])
    np.testing.assert_allclose(lb.forward(corners), [[px - 0.5, -0.5], [px + rw - 0.5, 1024 - 0.5]], atol=1e-9)


def test_apply_puts_a_landmark_on_its_pixel():
    # A bright dot at a known pixel lands where forward() says, within a fraction of a target pixel.
    image = np.zeros((2400, 1935), np.uint8)
    y, x = 1234, 777
    image[y - 12 : y + 13, x - 12 : x + 13] = 255
    lb = Letterbox(image.shape, (512, 512))
    out = lb.apply(image)
    assert out.shape == (512, 512) and out.dtype == np.uint8
    out = out.astype(np.float64)
    ys, xs = np.mgrid[: out.shape[0], : out.shape[1]]
    centroid = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, lb.forward(np.array([x, y], float)), atol=0.15)


def test_apply_pads_with_zeros_and_rejects_wrong_image():
    lb = Letterbox((200, 100), (64, 64))
    out = lb.apply(np.full((200, 100), 200, np.uint8))
    px, _ = lb.pad
    assert out[:, : px].max() == 0 and out[:, px + lb.resized_size[1] :].max() == 0
    assert out[:, px:px + lb.resized_size[1]].min() == 200
    with pytest.raises(ValueError, match="made for"):
        lb.apply(np.zeros((10, 10), np.uint8))


def test_invalid_sizes():
    with pytest.raises(ValueError):
        Letterbox((0, 10), (64, 64))
