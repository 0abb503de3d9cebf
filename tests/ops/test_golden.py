"""Golden agreement with the LZU authors' released code (github:tchittesh/lzu, MIT), when a checkout is available.

The authors' ``lzu/fixed_grid.py`` (saliency -> LZ grid) and ``lzu/invert_grid.py``
(the inverse grid) are the reference our warp core must agree with, in their
convention (``grid_sample`` with ``align_corners=True``, the inverse on an
``H x W`` lattice of pixel centres). Their code is not part of this repository
(a third-party file); set ``LZU_AUTHORS_REPO`` to a checkout (or an exported
tree with ``lzu/``) to run this module, e.g.
``git clone https://github.com/tchittesh/lzu /tmp/lzu && LZU_AUTHORS_REPO=/tmp/lzu pytest tests/ops/test_golden.py``.
Their files are loaded unmodified; only our side of the environment is
adapted: ``Tensor.cuda`` is the identity (their grid generator moves its
kernels to CUDA), ``np.float`` exists (removed in numpy 1.24) and
``mmdet3d.models.builder`` (MMDetection3D 0.x) provides a registry.
"""
import importlib.util
import os
import os.path as osp
import sys
import types

import numpy as np
import pytest
import torch

from lzu_mm.ops import invert_grid, saliency_to_grid

ROOT = os.environ.get('LZU_AUTHORS_REPO')
pytestmark = pytest.mark.skipif(
    not ROOT or not osp.isfile(osp.join(ROOT or '', 'lzu', 'invert_grid.py')),
    reason='LZU_AUTHORS_REPO is not set to a checkout of github:tchittesh/lzu (third-party code, not vendored)')


def peaked_saliency(h, w, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, h, w, generator=gen)**4 + 0.05


def _load(name):
    path = osp.join(ROOT, 'lzu', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'authors_lzu_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def authors_fixed_grid(monkeypatch):
    from mmengine.registry import Registry
    builder = types.ModuleType('mmdet3d.models.builder')
    builder.MODELS = Registry('authors grid generators')
    monkeypatch.setitem(sys.modules, 'mmdet3d.models.builder', builder)
    monkeypatch.setattr(torch.Tensor, 'cuda', lambda self, *a, **k: self, raising=False)
    monkeypatch.setattr(np, 'float', float, raising=False)
    return _load('fixed_grid')


@pytest.mark.parametrize('separable', [True, False])
@pytest.mark.parametrize('anti_crop', [True, False])
def test_grid_matches_the_authors(authors_fixed_grid, separable, anti_crop):
    sal = peaked_saliency(11, 17, seed=3)
    gen = authors_fixed_grid.RecasensSaliencyToGridMixin((33, 51), grid_shape=(11, 17), separable=separable,
                                                         attraction_fwhm=5., anti_crop=anti_crop)
    if separable:
        _, theirs = gen.separable_saliency_to_grid(sal, sal.sum(dim=2), sal.sum(dim=3), 'cpu')
    else:
        _, theirs = gen.nonseparable_saliency_to_grid(sal, sal, 'cpu')
    ours = saliency_to_grid(sal, separable, 5., anti_crop)
    assert (ours - theirs).abs().max() < 1e-5


@pytest.mark.parametrize('separable', [True, False])
def test_inverse_matches_the_authors_where_they_cover(separable):
    """Their inverse assigns each output pixel centre from the tile that contains it (uncovered: far outside)."""
    authors = _load('invert_grid')
    grid = saliency_to_grid(peaked_saliency(11, 17, seed=5), separable=separable, attraction_fwhm=5.)
    out = (60, 96)
    theirs = authors.invert_grid(grid.clone(), (1, 1, *out), separable=separable)
    ours = invert_grid(grid, out, separable=separable, align_corners=True)
    covered = (theirs.abs() <= 1).all(-1)
    assert covered.float().mean() > 0.97  # anti-crop: (almost) everything is covered; their border may miss
    assert (ours - theirs)[covered].abs().max() < 1e-4
