"""LZUMixin: per-sample recorded warps are unzoomed with the pipeline's inversion type."""
import pytest
import torch
from torch import nn

from lzu_mm.common import LZUMixin
from lzu_mm.ops import saliency_to_grid, unzoom


class Identity(nn.Module):

    def extract_feat(self, inputs):
        return inputs


class LZUIdentity(LZUMixin, Identity):

    def __init__(self):
        super().__init__()
        self.init_lzu(None)


def record(seed, separable):
    gen = torch.Generator().manual_seed(seed)
    grid = saliency_to_grid(torch.rand(1, 1, 6, 9, generator=gen)**4 + 0.05, separable=separable)
    return dict(grid=grid[0].numpy(), separable=separable)


def test_per_sample_non_separable_records_use_2d_inversion():
    model = LZUIdentity()
    x = torch.randn(2, 3, 32, 48)
    metas = [dict(img_shape=(32, 48), lzu_zoom=record(s, False)) for s in (0, 1)]
    with model.lzu_context(x, metas) as inputs:
        out = model.extract_feat(inputs)
    grids = torch.stack([torch.from_numpy(m['lzu_zoom']['grid']) for m in metas])
    expected = unzoom(x, grids, img_shapes=[(32, 48)] * 2, pad_shape=(32, 48), separable=False)
    assert torch.allclose(out, expected, atol=1e-5)
    separably = unzoom(x, grids, img_shapes=[(32, 48)] * 2, pad_shape=(32, 48), separable=True)
    assert not torch.allclose(out, separably, atol=1e-3)  # the choice matters for these grids


def test_mixed_warp_types_in_a_batch_are_refused():
    model = LZUIdentity()
    metas = [dict(img_shape=(32, 48), lzu_zoom=record(0, False)), dict(img_shape=(32, 48), lzu_zoom=record(1, True))]
    with pytest.raises(ValueError, match='mix separable and non-separable'):
        model.lzu_zoom(torch.randn(2, 3, 32, 48), metas)
