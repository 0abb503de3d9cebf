"""Bad input gets a ValueError naming the argument and what was expected."""
import pytest
import torch

from lzu_mm.ops import LZWarp, invert_grid, saliency_to_grid, unzoom, upsample_grid, zoom


def good_grid(b=1, h=4, w=5):
    return saliency_to_grid(torch.ones(b, 1, h, w))


@pytest.mark.parametrize('saliency,match', [
    (torch.full((1, 1, 4, 4), float('nan')), 'finite'),
    (torch.tensor([[[[1., float('inf')], [1., 1.]]]]), 'finite'),
    (-torch.ones(1, 1, 4, 4), 'non-negative'),
    (torch.zeros(1, 1, 4, 4), 'positive sum'),
    (torch.ones(4, 4), r'\[B, 1, h, w\]'),
    (torch.ones(1, 2, 4, 4), r'\[B, 1, h, w\]'),
    (torch.ones(1, 1, 1, 4), 'at least 2x2'),
    (torch.ones(1, 1, 4, 4, dtype=torch.int64), 'floating'),
    ([[1.0]], 'torch.Tensor'),
])
def test_bad_saliency(saliency, match):
    with pytest.raises(ValueError, match=match) as info:
        saliency_to_grid(saliency)
    assert 'saliency' in str(info.value)


def test_one_zero_map_in_a_batch_is_rejected():
    saliency = torch.ones(2, 1, 4, 4)
    saliency[1] = 0
    with pytest.raises(ValueError, match='saliency.*positive sum'):
        saliency_to_grid(saliency)


@pytest.mark.parametrize('fwhm', [0, -1., float('nan'), 'wide'])
def test_bad_attraction_fwhm(fwhm):
    with pytest.raises(ValueError, match='attraction_fwhm'):
        saliency_to_grid(torch.ones(1, 1, 4, 4), attraction_fwhm=fwhm)


@pytest.mark.parametrize('grid,match', [
    (torch.zeros(1, 4, 5), r'\[B, h, w, 2\]'),
    (torch.zeros(1, 1, 5, 2), 'at least 2x2'),
    (torch.zeros(1, 4, 5, 3), r'\[B, h, w, 2\]'),
    (torch.full((1, 4, 5, 2), float('nan')), 'finite'),
])
def test_bad_grid(grid, match):
    for call in (lambda: invert_grid(grid, (8, 8), align_corners=True), lambda: upsample_grid(grid, (8, 8)),
                 lambda: zoom(torch.zeros(1, 3, 8, 8), grid, (4, 4))):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize('out_shape', [(0, 5), (5, -1), (3, ), 'big', (2.5, 3)])
def test_bad_out_shape(out_shape):
    with pytest.raises(ValueError, match='out_shape'):
        invert_grid(good_grid(), out_shape, align_corners=True)
    with pytest.raises(ValueError, match='out_shape'):
        zoom(torch.zeros(1, 3, 8, 8), good_grid(), out_shape)


def test_mismatched_batch_sizes():
    with pytest.raises(ValueError, match='images has batch size 3 but grid has batch size 2'):
        zoom(torch.zeros(3, 3, 8, 8), good_grid(2), (4, 4))
    with pytest.raises(ValueError, match=r'features\[1\] has batch size 3'):
        unzoom([torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 4, 4)], good_grid(2))
    with pytest.raises(ValueError, match='img_shapes must give one'):
        unzoom(torch.zeros(2, 3, 8, 8), good_grid(2), img_shapes=[(8, 8)] * 3, pad_shape=(8, 8))


def test_img_shapes_larger_than_padding():
    with pytest.raises(ValueError, match='img_shapes must lie in'):
        unzoom(torch.zeros(1, 3, 8, 8), good_grid(), img_shapes=[(40, 30)], pad_shape=(32, 32))


def test_folded_grid_cannot_be_inverted_separably():
    grid = good_grid().flip(2)
    with pytest.raises(ValueError, match='monotone'):
        invert_grid(grid, (8, 8), align_corners=True)


def test_fixed_warp_rejects_batched_saliency():
    with pytest.raises(ValueError, match=r'\[1, 1, h, w\]'):
        LZWarp(torch.ones(2, 1, 4, 4))
