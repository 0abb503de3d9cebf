"""LZUMixin: recorded warps are unzoomed with the pipeline's inversion type; transforms after the zoom."""
import numpy as np
import pytest
import torch
from torch import nn

from lzu_mm.common import LZUMixin, post_zoom_flip
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
    with pytest.raises(ValueError, match='not separable'):  # the separable inversion would misplace these grids
        unzoom(x, grids, img_shapes=[(32, 48)] * 2, pad_shape=(32, 48), separable=True)


def test_mixed_warp_types_in_a_batch_are_refused():
    model = LZUIdentity()
    metas = [dict(img_shape=(32, 48), lzu_zoom=record(0, False)), dict(img_shape=(32, 48), lzu_zoom=record(1, True))]
    with pytest.raises(ValueError, match='mix separable and non-separable'):
        model.lzu_zoom(torch.randn(2, 3, 32, 48), metas)


# ------------------------------------------------------------ transforms after the pipeline's zoom
RECORD = dict(grid=None, img_shape=(300, 480), flip=False, flip_direction=None,
              homography_matrix=np.diag([0.25, 0.25, 1.]))
FLIP_H = np.array([[-1., 0., 480.], [0., 1., 0.], [0., 0., 1.]])


def test_a_flip_after_the_zoom_mirrors_the_grid_a_flip_before_does_not():
    assert post_zoom_flip(RECORD, dict(img_shape=(300, 480), flip=True, flip_direction='vertical')) == 'vertical'
    before = dict(RECORD, flip=True, flip_direction='horizontal')  # RandomFlip placed before the zoom
    assert post_zoom_flip(before, dict(img_shape=(300, 480), flip=True, flip_direction='horizontal')) is None
    assert post_zoom_flip(RECORD, dict(img_shape=(300, 480), flip=False)) is None
    assert post_zoom_flip(RECORD, dict(img_shape=(300, 480))) is None  # no flip state packed: nothing happened


def test_homography_decides_when_both_carry_it():
    meta = dict(img_shape=(300, 480), flip=False)  # the flags are overridden by the exact homography
    assert post_zoom_flip(RECORD, dict(meta, homography_matrix=FLIP_H @ RECORD['homography_matrix'])) == 'horizontal'
    assert post_zoom_flip(RECORD, dict(meta, homography_matrix=RECORD['homography_matrix'])) is None
    both = dict(RECORD, flip=True, flip_direction='horizontal', homography_matrix=FLIP_H @ RECORD['homography_matrix'])
    twice = FLIP_H @ both['homography_matrix']  # flipped before and again after the zoom: the flags cannot tell
    assert post_zoom_flip(both, dict(meta, flip=True, flip_direction='horizontal', homography_matrix=twice)) == \
        'horizontal'
    affine = np.array([[1., 0.1, 5.], [0., 1., 0.], [0., 0., 1.]]) @ RECORD['homography_matrix']  # RandomAffine
    with pytest.raises(ValueError, match=r'sample 3 \(a.jpg\): .*neither the identity nor a flip'):
        post_zoom_flip(RECORD, dict(meta, img_path='a.jpg', homography_matrix=affine), 3)


def test_a_changed_image_is_refused():
    with pytest.raises(ValueError, match=r'made it \(300, 480\) pixels but its img_shape is now \(256, 256\)'):
        post_zoom_flip(RECORD, dict(img_shape=(256, 256)))


def test_a_flip_without_direction_is_refused():
    with pytest.raises(ValueError, match="flip_direction=None.*meta_keys"):
        post_zoom_flip(RECORD, dict(img_shape=(300, 480), flip=True))
    with pytest.raises(ValueError, match='flips both before and after'):  # flipped before, flags now say no flip
        post_zoom_flip(dict(RECORD, flip=True, flip_direction='horizontal'), dict(img_shape=(300, 480), flip=False))


def test_the_model_refuses_at_the_forward():
    model = LZUIdentity()
    rec = dict(record(0, True), img_shape=(32, 48))
    with pytest.raises(ValueError, match='flip_direction'):
        model.lzu_zoom(torch.randn(1, 3, 32, 48), [dict(img_shape=(32, 48), flip=True, lzu_zoom=rec)])
    with pytest.raises(ValueError, match='img_shape is now'):
        model.lzu_zoom(torch.randn(1, 3, 32, 48), [dict(img_shape=(30, 48), lzu_zoom=rec)])
