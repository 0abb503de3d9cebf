"""LZ grid generation (paper eq. 1-4; FOVEA separable / anti-crop)."""
import pytest
import torch

from lzu_mm.ops import saliency_to_grid, upsample_grid, uniform_saliency

from .reference import reference_grid

VARIANTS = [(sep, anti) for sep in (True, False) for anti in (True, False)]


def identity_grid(h, w, dtype=torch.float32):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=dtype), torch.linspace(-1, 1, w, dtype=dtype),
                            indexing='ij')
    return torch.stack([xs, ys], -1)[None]


@pytest.mark.parametrize('separable,anti_crop', VARIANTS)
@pytest.mark.parametrize('shape', [(31, 51), (27, 48), (2, 2), (5, 3)])
def test_uniform_saliency_gives_identity_grid(separable, anti_crop, shape):
    grid = saliency_to_grid(uniform_saliency(shape), separable, 13., anti_crop)
    assert grid.shape == (1, *shape, 2)
    assert (grid - identity_grid(*shape)).abs().max() <= 1e-6


@pytest.mark.parametrize('separable,anti_crop', VARIANTS)
def test_matches_authors_formulation(separable, anti_crop):
    torch.manual_seed(0)
    saliency = torch.rand(2, 1, 9, 14)**3 + 1e-3
    for fwhm in (3., 13.):
        ours = saliency_to_grid(saliency, separable, fwhm, anti_crop)
        ref = reference_grid(saliency, separable, fwhm, anti_crop)
        assert (ours.double() - ref).abs().max() <= 1e-5


def test_authors_released_saliency_matches_reference(official_nuscenes_saliency):
    from lzu_mm.ops import load_saliency
    saliency = load_saliency(official_nuscenes_saliency, (27, 48))
    ours = saliency_to_grid(saliency, separable=True, attraction_fwhm=10, anti_crop=True)
    ref = reference_grid(saliency, True, 10., True)
    assert (ours.double() - ref).abs().max() <= 1e-5
    # the warp is really non-uniform: the released map magnifies some columns
    assert (ours - identity_grid(27, 48)).abs().max() > 0.02


def test_anti_crop_keeps_the_border_and_no_anti_crop_crops():
    saliency = torch.zeros(1, 1, 16, 16)
    saliency[..., 6:10, 6:10] = 1
    saliency += 1e-3
    anti = saliency_to_grid(saliency, True, 8., anti_crop=True)
    crop = saliency_to_grid(saliency, True, 8., anti_crop=False)
    assert anti[0, 0, 0, 0] == -1 and anti[0, 0, -1, 0] == 1
    assert crop[0, 0, 0, 0] > -1 and crop[0, 0, -1, 0] < 1


def test_batched_equals_per_sample():
    torch.manual_seed(1)
    saliency = torch.rand(3, 1, 8, 11)
    for separable in (True, False):
        batched = saliency_to_grid(saliency, separable, 5.)
        single = torch.cat([saliency_to_grid(s[None], separable, 5.) for s in saliency])
        assert torch.allclose(batched, single, atol=1e-7)


def test_grid_is_scale_invariant_and_follows_saliency():
    torch.manual_seed(2)
    saliency = torch.rand(1, 1, 10, 12)
    assert torch.allclose(saliency_to_grid(saliency), saliency_to_grid(saliency * 1000), atol=1e-6)
    # more saliency on the right half -> more zoomed pixels sample the right half
    skew = torch.ones(1, 1, 10, 12)
    skew[..., 6:] = 10
    grid = saliency_to_grid(skew, attraction_fwhm=4.)
    assert (grid[0, 0, :, 0] > 0).float().mean() > 0.5


def test_dtype_and_device_follow_input():
    saliency = torch.rand(1, 1, 6, 7, dtype=torch.float64)
    assert saliency_to_grid(saliency).dtype == torch.float64
    assert saliency_to_grid(saliency.float(), separable=False).dtype == torch.float32


def test_upsample_grid_pixel_conventions():
    """The identity grid upsamples to each convention's pixel-centre coordinates; align_corners=True is
    F.interpolate's bilinear upsampling of the lattice."""
    grid = identity_grid(5, 7)
    assert (upsample_grid(grid, (9, 13), align_corners=True) - identity_grid(9, 13)).abs().max() < 1e-6
    half = upsample_grid(grid, (9, 13))  # default: half-pixel centres (2j + 1) / W - 1
    xs = (2 * torch.arange(13.) + 1) / 13 - 1
    ys = (2 * torch.arange(9.) + 1) / 9 - 1
    assert (half[0, ..., 0] - xs[None]).abs().max() < 1e-6 and (half[0, ..., 1] - ys[:, None]).abs().max() < 1e-6
    bent = grid.clone()
    bent[0, 2, 3] += 0.1  # a non-identity grid: both conventions interpolate the same bilinear surface
    ref = torch.nn.functional.interpolate(bent.permute(0, 3, 1, 2), size=(9, 13), mode='bilinear', align_corners=True)
    assert torch.allclose(upsample_grid(bent, (9, 13), align_corners=True), ref.permute(0, 2, 3, 1), atol=1e-6)
    assert upsample_grid(grid, (5, 7)).shape == (1, 5, 7, 2)
