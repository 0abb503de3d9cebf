"""The arrays behind the panels: magnification, zoom, unzoom(zoom(image)) and coverage, on real images."""
import numpy as np
import pytest
import torch

from lzu_mm.ops import load_saliency, saliency_to_grid, uniform_saliency, upsample_grid
from lzu_mm.visualization import (compute_warp_panels, grid_lines_px, magnification_map, uniform_resize,
                                  unzoom_image, zoom_image)
from tests.visualization.utils import OFFICIAL_NUSCENES_LZ, nuscenes_front_image, read_rgb


@pytest.fixture
def official_grid(official_nuscenes_saliency):
    lz = OFFICIAL_NUSCENES_LZ
    sal = load_saliency(official_nuscenes_saliency, lz['grid_shape'])
    grid = saliency_to_grid(sal.double(), lz['separable'], lz['attraction_fwhm'], lz['anti_crop'])
    return grid, sal


def test_uniform_warp_is_identity():
    grid = saliency_to_grid(uniform_saliency((9, 16)).double())
    mag = magnification_map(grid, (45, 80))
    np.testing.assert_allclose(mag, 1.0, atol=1e-9)
    img = np.random.default_rng(0).integers(0, 256, (45, 80, 3), dtype=np.uint8)
    assert np.abs(zoom_image(img, grid, (20, 30)).astype(int) - uniform_resize(img, (20, 30)).astype(int)).max() <= 1
    rec, uncovered = unzoom_image(zoom_image(img, grid, (45, 80)), grid, (45, 80))
    assert not uncovered.any()
    assert np.abs(rec.astype(int) - img.astype(int)).max() <= 1


def test_official_saliency_on_real_image(official_grid):
    """nuScenes CAM_FRONT with the authors' saliency: anti-crop -> mean magnification 1, nothing uncovered."""
    grid, sal = official_grid
    image = read_rgb(nuscenes_front_image())
    assert image.shape == (900, 1600, 3)
    panels = compute_warp_panels(image, grid, (225, 400), sal[0, 0], separable=True, max_side=800)
    summary = panels.summary()
    assert abs(summary['mean_magnification'] - 1) < 0.05
    assert abs(summary['mean_magnification'] - 1) < 5e-3  # measured: 0.9991 (finite differences at the border)
    assert summary['max_magnification'] > 1.5 > 0.7 > summary['min_magnification']
    assert summary['uncovered_fraction'] == 0
    assert summary['zoom_vs_uniform_mean_abs_diff'] > 5  # the zoom is not a uniform resize
    assert panels.image.shape == (450, 800, 3) and panels.unzoomed.shape == (450, 800, 3)
    # the magnified band is the horizon: rows around the middle are magnified, top and bottom demagnified
    rows = panels.magnification.mean(1)
    assert rows[180:260].mean() > 1.2 and rows[:40].mean() < 1 and rows[-40:].mean() < 1


def test_magnification_is_the_sampling_density(official_grid):
    """Independent check of the definition: count the zoom's sample points per original-image block."""
    grid, _ = official_grid
    big_h, big_w = 90, 160
    mag = magnification_map(grid, (big_h, big_w))
    dense = upsample_grid(grid, (big_h * 6, big_w * 6))[0].numpy()  # samples of a zoom to 6x the size
    px = ((dense[..., 0] + 1) * big_w - 1) / 2  # half-pixel convention, as magnification_map's default
    py = ((dense[..., 1] + 1) * big_h - 1) / 2
    block = 10
    counts, _, _ = np.histogram2d(py.ravel(), px.ravel(), bins=[big_h // block, big_w // block],
                                  range=[[-0.5, big_h - 0.5], [-0.5, big_w - 0.5]])
    density = counts / counts.mean()
    expected = mag.reshape(big_h // block, block, big_w // block, block).mean((1, 3))
    inner = (slice(1, -1), slice(1, -1))  # border blocks are half outside the lattice of pixel centres
    rel = np.abs(density[inner] - expected[inner]) / expected[inner]
    assert np.median(rel) < 0.03 and rel.max() < 0.15


def test_separable_and_general_inverse_agree(official_grid):
    grid, _ = official_grid
    np.testing.assert_allclose(magnification_map(grid, (45, 80), separable=False), magnification_map(grid, (45, 80)),
                               atol=1e-6)


def test_without_anti_crop_the_uncovered_border_is_marked(official_nuscenes_saliency):
    lz = OFFICIAL_NUSCENES_LZ
    sal = load_saliency(official_nuscenes_saliency, lz['grid_shape'])
    grid = saliency_to_grid(sal.double(), lz['separable'], lz['attraction_fwhm'], anti_crop=False)
    image = read_rgb(nuscenes_front_image())
    panels = compute_warp_panels(image, grid, (225, 400), sal[0, 0], max_side=400)
    assert 0.01 < panels.uncovered.mean() < 0.5
    assert panels.uncovered[0].all() and not panels.uncovered[panels.uncovered.shape[0] // 2].any()
    assert (panels.magnification[panels.uncovered] == 0).all()
    # grid_sample's zero padding there (bilinear blending with the zeros within a pixel of the edge)
    assert panels.unzoomed[panels.uncovered].mean() < 0.05 * panels.unzoomed[~panels.uncovered].mean()
    # the zoom samples only the covered part: its total density still integrates to the zoomed image's area
    assert abs(panels.magnification.mean() - 1) < 0.02


def test_grid_lines_reach_the_image_corners_with_anti_crop(official_grid):
    grid, _ = official_grid
    rows, cols = grid_lines_px(grid, (900, 1600))
    assert rows.shape == (27, 48, 2) and cols.shape == (48, 27, 2)
    np.testing.assert_allclose(rows[0, 0], [-0.5, -0.5], atol=1e-6)  # the outer edges of the corner pixels
    np.testing.assert_allclose(rows[-1, -1], [1599.5, 899.5], atol=1e-6)
    corner_rows, _ = grid_lines_px(grid, (900, 1600), align_corners=True)  # the authors' convention: pixel centres
    np.testing.assert_allclose(corner_rows[-1, -1], [1599, 899], atol=1e-6)
    assert (np.diff(rows[..., 0], axis=1) >= 0).all()  # monotone: no fold


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='grid'):
        magnification_map(np.zeros((4, 4, 3)), (10, 10))
    with pytest.raises(ValueError, match='image_shape'):
        magnification_map(torch.zeros(1, 4, 4, 2), (1, 10))
    with pytest.raises(ValueError, match='image'):
        compute_warp_panels(np.zeros(5), torch.zeros(1, 4, 4, 2), (2, 2))
