"""Zoom / unzoom (§3-4), batch-padding exactness, caching, purity of lzu_mm.ops."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lzu_mm.ops import LZWarp, sample_bilinear, saliency_to_grid, sampling_grid, \
    uniform_saliency, unzoom, unzoom_positions, zoom

STRIDES = (8, 16, 32, 64, 128)


def fpn_feats(bsz, pad_shape, channels=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(bsz, channels, -(-pad_shape[0] // s), -(-pad_shape[1] // s), generator=gen) for s in STRIDES]


def dense(pos):
    """Unzoom positions as a [B, H, W, 2] tensor (separable ones come as (x [B, W], y [B, H]))."""
    if isinstance(pos, tuple):
        x, y = pos
        return torch.stack([x[:, None, :].expand(-1, y.shape[1], -1), y[:, :, None].expand(-1, -1, x.shape[1])], -1)
    return pos


def peaked(h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, h, w, generator=gen)**4 + 0.05


@pytest.mark.parametrize('align_corners', [False, True])
def test_uniform_zoom_then_unzoom_is_a_bilinear_resize(align_corners):
    """A uniform zoom is the bilinear resize of the same pixel convention (False: OpenCV's / Resize's)."""
    x = torch.randn(2, 3, 90, 160)
    resized = F.interpolate(x.double(), (45, 80), mode='bilinear', align_corners=align_corners).float()
    # grid_sample reads float32 coordinates: the identity holds to ~1e-5 px, i.e. ~1e-5 on N(0, 1) noise
    grid = saliency_to_grid(uniform_saliency((27, 48)).double())
    ac = dict(align_corners=align_corners)
    assert (unzoom(zoom(x, grid, (45, 80), **ac), grid, **ac) - resized).abs().max() < 1e-4
    warp = LZWarp(uniform_saliency((27, 48)), **ac)  # fixed warps compute their grid in float64
    assert (warp.unzoom(warp.zoom(x, (45, 80))) - resized).abs().max() < 1e-4
    grid32 = saliency_to_grid(uniform_saliency((27, 48)))  # float32 grid: identity within ~5e-7
    assert (unzoom(zoom(x, grid32, (45, 80), **ac), grid32, **ac) - resized).abs().max() < 5e-4
    # the other convention is a different resize: off by up to (1 - s) / 2 pixels at scale s
    other = F.interpolate(x.double(), (45, 80), mode='bilinear', align_corners=not align_corners).float()
    assert (warp.zoom(x, (45, 80)) - other).abs().max() > 0.1


@pytest.mark.parametrize('separable', [True, False])
@pytest.mark.parametrize('exact_per_level', [True, False])
def test_uniform_unzoom_is_the_identity_with_padding(separable, exact_per_level):
    warp = LZWarp(uniform_saliency((31, 51)), separable=separable, exact_per_level=exact_per_level)
    feats = fpn_feats(2, (608, 960))
    out = warp.unzoom(feats, img_shapes=[(600, 960), (450, 703)], pad_shape=(608, 960))
    for f, o in zip(feats, out):
        assert (f - o).abs().max() < 1e-4  # float32 sampling coordinates: ~1e-5 px
    positions = unzoom_positions(warp.grid(dtype=torch.float64), [f.shape[-2:] for f in feats],
                                 [(600, 960), (450, 703)], (608, 960), separable, exact_per_level)
    for f, p in zip(feats, positions):  # the positions themselves are the identity to float64 rounding
        h, w = f.shape[-2:]
        ident = dense((torch.arange(w, dtype=torch.float64)[None].expand(2, w),
                       torch.arange(h, dtype=torch.float64)[None].expand(2, h)))
        assert (dense(p) - ident).abs().max() < 1e-9


@pytest.mark.parametrize('separable', [True, False])
def test_unzoom_reads_only_the_valid_region(separable):
    """Valid cells never see the padding: poison it and check nothing leaks."""
    warp = LZWarp(peaked(31, 51), separable=separable)
    img_shapes = [(600, 960), (451, 700)]
    feats = fpn_feats(2, (608, 960))
    poisoned = []
    for f, s in zip(feats, STRIDES):
        p = f.clone()
        for b, (h, w) in enumerate(img_shapes):
            p[b, :, (h - 1) // s + 1:] = 1e6  # cells whose position lies beyond the last valid pixel
            p[b, :, :, (w - 1) // s + 1:] = 1e6
        poisoned.append(p)
    out = warp.unzoom(poisoned, img_shapes=img_shapes, pad_shape=(608, 960))
    for o, s in zip(out, STRIDES):
        for b, (h, w) in enumerate(img_shapes):
            valid = o[b, :, :(h - 1) // s + 1, :(w - 1) // s + 1]
            assert valid.abs().max() < 1e3


def test_padded_batch_equals_unpadded_images():
    """Unzooming a padded batch gives, on each valid region, what unzooming the image alone gives."""
    warp = LZWarp(peaked(27, 48, seed=5))
    x = torch.randn(1, 4, 56, 96)  # an image of 56x96 features at stride 1
    padded = F.pad(x, (0, 32, 0, 8))  # padded to 64x128
    alone = warp.unzoom(x, img_shapes=[(56, 96)], pad_shape=(56, 96))
    in_batch = warp.unzoom(padded, img_shapes=[(56, 96)], pad_shape=(64, 128))
    assert (in_batch[..., :56, :96] - alone).abs().max() < 1e-4


def test_non_uniform_unzoom_undoes_zoom_on_smooth_images():
    """unzoom(zoom(x)) ~ x for a smooth image (and is far from it without unzoom)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 120), torch.linspace(-1, 1, 200), indexing='ij')
    x = torch.stack([torch.sin(3 * xs), torch.cos(2 * ys), xs * ys])[None]
    yy, xx = torch.meshgrid(torch.arange(27.), torch.arange(48.), indexing='ij')
    blob = (0.02 + torch.exp(-((xx - 34)**2 + (yy - 8)**2) / 20))[None, None]  # zoom towards the top right
    for separable in (True, False):
        grid = saliency_to_grid(blob, separable=separable, attraction_fwhm=10.)
        zoomed = zoom(x, grid, (120, 200))
        back = unzoom(zoomed, grid, separable=separable)
        assert (back - x).abs().mean() < 0.01
        assert (zoomed - x).abs().mean() > 0.05


def test_batched_unzoom_equals_per_sample():
    grids = saliency_to_grid(torch.cat([peaked(12, 20, seed=s) for s in range(3)]))
    feats = [torch.randn(3, 2, 40, 64), torch.randn(3, 2, 20, 32)]
    img_shapes = [(310, 500), (320, 512), (200, 300)]
    batched = unzoom(feats, grids, img_shapes=img_shapes, pad_shape=(320, 512))
    for b in range(3):
        single = unzoom([f[b:b + 1] for f in feats], grids[b:b + 1], img_shapes=[img_shapes[b]], pad_shape=(320, 512))
        for bo, so in zip(batched, single):
            assert torch.allclose(bo[b:b + 1], so, atol=1e-6)


def test_downsampled_inverse_is_close_to_exact_per_level():
    shapes = [(76, 120), (38, 60), (19, 30), (10, 15), (5, 8)]
    grid = saliency_to_grid(peaked(31, 51, seed=3).double())
    fast = unzoom_positions(grid, shapes, [(600, 960)], (608, 960))
    exact = unzoom_positions(grid, shapes, [(600, 960)], (608, 960), exact_per_level=True)
    for f, e in zip(fast, exact):
        assert (dense(f) - dense(e)).abs().max() < 0.05  # cells of that level
    fast2d = unzoom_positions(grid, shapes, [(600, 960)], (608, 960), separable=False)
    for f, e, s in zip(fast2d, exact, STRIDES):  # on the valid region (the padding reads itself)
        valid = (slice(None), slice(0, 599 // s + 1), slice(0, 959 // s + 1))
        assert (f[valid] - dense(e)[valid]).abs().max() < 0.05


def test_sample_bilinear_matches_grid_sample():
    feats = torch.randn(2, 3, 9, 13, dtype=torch.float64)
    pos = torch.rand(2, 5, 7, 2, dtype=torch.float64) * torch.tensor([15., 11.], dtype=torch.float64) - 1
    ref = F.grid_sample(feats, torch.stack([pos[..., 0] / 6 - 1, pos[..., 1] / 4 - 1], -1), align_corners=True)
    assert torch.allclose(sample_bilinear(feats, pos), ref, atol=1e-12)


def test_separable_positions_sample_like_dense_ones():
    feats = torch.randn(2, 3, 9, 13, dtype=torch.float64)
    px = torch.rand(2, 7, dtype=torch.float64) * 15 - 1
    py = torch.rand(2, 5, dtype=torch.float64) * 11 - 1
    assert torch.allclose(sample_bilinear(feats, (px, py)), sample_bilinear(feats, dense((px, py))), atol=1e-12)


def test_gradcheck_through_unzoom_resampling():
    for separable in (True, False):
        sal = peaked(4, 5, seed=6).double().requires_grad_()
        feats = torch.randn(1, 2, 6, 8, dtype=torch.float64, requires_grad=True)

        def fn(s, f):
            grid = saliency_to_grid(s, separable=separable, attraction_fwhm=3.)
            zoomed = zoom(f, grid, (6, 8))
            return unzoom(zoomed, grid, separable=separable)

        assert torch.autograd.gradcheck(fn, (sal, feats), eps=1e-6, atol=1e-5)


def test_fixed_warp_caches_and_never_reuses_stale_grids():
    warp = LZWarp(peaked(27, 48))
    g32 = warp.grid()
    assert warp.grid() is g32
    g64 = warp.grid(dtype=torch.float64)
    assert g64.dtype == torch.float64 and g64 is not g32
    a = warp.unzoom_grids([(76, 120)], [(600, 960)], (608, 960))
    assert warp.unzoom_grids([(76, 120)], [(600, 960)], (608, 960)) is a
    b = warp.unzoom_grids([(76, 120)], [(500, 960)], (608, 960))
    assert b is not a and not torch.equal(a[0], b[0])
    c = warp.unzoom_grids([(38, 60)], [(600, 960)], (608, 960))
    assert c[0].shape == (1, 38, 60, 2) and c[0].dtype == torch.float32
    assert warp.unzoom_grids([(38, 60)], [(600, 960)], (608, 960), dtype=torch.float64)[0].dtype == torch.float64
    expected = unzoom_positions(saliency_to_grid(peaked(27, 48).double()), [(38, 60)], [(600, 960)], (608, 960))
    assert torch.allclose(c[0], sampling_grid(expected[0], (38, 60)))


def test_cached_zoom_is_exactly_zoom():
    """LZWarp.zoom caches its sampling grid; the result is bitwise that of zoom() with the warp's grid."""
    warp = LZWarp(peaked(27, 48, seed=4), attraction_fwhm=10.)
    images = torch.rand(2, 3, 90, 160) * 255
    for out_shape in ((45, 80), (120, 200), (45, 80)):  # the repeat reads the cache
        assert torch.equal(warp.zoom(images, out_shape), zoom(images, warp.grid(dtype=torch.float64), out_shape))
    valid = [(80, 150), (90, 160)]
    assert torch.equal(warp.zoom(images, (90, 160), valid, valid),
                       zoom(images, warp.grid(dtype=torch.float64), (90, 160), valid, valid))
    double = images[:1].double()
    assert torch.equal(warp.zoom(double, (30, 40)), zoom(double, warp.grid(dtype=torch.float64), (30, 40)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA not available')
def test_cuda_matches_cpu():
    warp = LZWarp(peaked(27, 48))
    feats = fpn_feats(1, (224, 400))
    cpu = warp.unzoom(feats, img_shapes=[(225, 400)], pad_shape=(224, 400))
    gpu = warp.unzoom([f.cuda() for f in feats], img_shapes=[(225, 400)], pad_shape=(224, 400))
    for c, g in zip(cpu, gpu):
        assert torch.allclose(c, g.cpu(), atol=1e-5)


@pytest.mark.parametrize('frameworks', ['blocked', 'installed'])
def test_ops_imports_no_openmmlab_package(repo_root, frameworks):
    """lzu_mm.ops is pure torch: it imports and works where no OpenMMLab package can be imported, and importing it
    where they are installed imports none of them (the landed ``import lzu_mm`` registered all three frameworks)."""
    block = ('class Block:\n'
             '    def find_spec(self, name, path=None, target=None):\n'
             '        if name.split(".")[0] in ("mmcv", "mmengine", "mmdet", "mmseg", "mmdet3d"):\n'
             '            raise ImportError("blocked " + name)\n'
             'sys.meta_path.insert(0, Block())\n')
    code = ('import sys\n' + (block if frameworks == 'blocked' else '') +
            'import torch\n'
            'from lzu_mm.ops import LZWarp, uniform_saliency\n'
            'w = LZWarp(uniform_saliency((4, 5)))\n'
            'x = torch.randn(1, 2, 8, 8)\n'
            'assert torch.allclose(w.unzoom(x), x, atol=1e-4)\n'
            'mm = [m for m in sys.modules if m.split(".")[0] in ("mmcv", "mmengine", "mmdet", "mmseg", "mmdet3d")]\n'
            'assert not mm, mm\n')
    env = dict(os.environ, PYTHONPATH=repo_root)
    subprocess.run([sys.executable, '-c', code], check=True, env=env, cwd=repo_root)


@pytest.mark.parametrize('align_corners', [False, True])
def test_separable_zoom_is_the_2d_evaluation_per_axis(align_corners):
    """zoom(..., separable=True) evaluates a separable grid per axis: the same sampling grid (bit-identical in
    float32, padded inputs and outputs, both pixel conventions) and the same gradients reaching the saliency."""
    from lzu_mm.ops.warp import zoom_sampling_grid
    saliency = torch.cat([peaked(31, 51, seed) for seed in (0, 1)]).double().requires_grad_()
    grid = saliency_to_grid(saliency, attraction_fwhm=4.)
    shapes = dict(img_shapes=[(120, 192), (110, 180)], out_img_shapes=[(60, 96), (56, 90)])
    for dtype in (torch.float32, torch.float64):
        dense_ = zoom_sampling_grid(grid.detach(), (120, 192), (64, 96), 2, dtype=dtype, align_corners=align_corners,
                                    **shapes)
        per_axis = zoom_sampling_grid(grid.detach(), (120, 192), (64, 96), 2, dtype=dtype,
                                      align_corners=align_corners, separable=True, **shapes)
        assert float((dense_ - per_axis).abs().max()) <= (0 if dtype == torch.float32 else 1e-15)
    images = torch.rand(2, 3, 120, 192, dtype=torch.float64)
    weights = torch.rand(64, 96, dtype=torch.float64)
    grads = []
    for separable in (False, True):
        out = zoom(images, grid, (64, 96), align_corners=align_corners, separable=separable, **shapes)
        grads.append(torch.autograd.grad((out * weights).sum(), saliency, retain_graph=True)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match='not separable'):
        zoom(images, saliency_to_grid(peaked(31, 51).double(), separable=False), (64, 96), separable=True)
