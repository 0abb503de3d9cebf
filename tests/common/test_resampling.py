"""DownsizeNet and SaliencyNet on the real sample images: bilinear / identity at initialisation, learning signal,
checkpoints of the wrong shape, the strict transfer path, bad configurations."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lzu_mm.common import DownsizeNet, SaliencyNet, build_lzu_resampling, build_lzu_warp
from lzu_mm.ops import LZWarp, bilinear_resample, identity_grid, saliency_to_grid, zoom_sampling_grid
from tests.conftest import shared_path


def _source(path):
    return torch.from_numpy(cv2.imread(path).astype(np.float32)).permute(2, 0, 1)[None]  # [1, 3, H, W] BGR 0-255


@pytest.fixture(scope='module')
def cityscapes_image():
    return _source(shared_path('cityscapes', 'leftImg8bit', 'val', 'frankfurt',
                               'frankfurt_000000_000294_leftImg8bit.png'))


@pytest.fixture(scope='module')
def nuscenes_image():
    return _source(sorted(glob.glob(osp.join(shared_path('nuscenes', 'samples', 'CAM_FRONT'), '*.jpg')))[0])


def _net(**kwargs):
    torch.manual_seed(0)
    net = DownsizeNet(**kwargs)
    net.init_weights()
    return net


@pytest.mark.parametrize('activation', ['softmax', 'sigmoid'])
@pytest.mark.parametrize('num_convs', [2, 3, 4])
def test_downsizenet_starts_as_bilinear(cityscapes_image, activation, num_convs):
    """Half-pixel positions (the project's convention): DownsizeNet at initialisation == bilinear Resize
    (F.interpolate, align_corners=False) down- and upsampling, exactly in float64 (1e-9 grey levels) and within
    1e-4 of grid_sample at the same float32 positions; corner-aligned positions give the corner-aligned resize."""
    net = _net(num_convs=num_convs, activation=activation)
    src = cityscapes_image
    for out in ((64, 128), (45, 77), (300, 600)):
        for align_corners in (False, True):
            expected = F.interpolate(src.double(), size=out, mode='bilinear', align_corners=align_corners)
            exact = zoom_sampling_grid(identity_grid(), src.shape[-2:], out, dtype=torch.float64,
                                       align_corners=align_corners)
            sampling = exact.float()
            with torch.no_grad():
                assert (net.double()(src.double(), exact) - expected).abs().max() < 1e-9, (out, align_corners)
                got = net.float()(src, sampling)
            assert (got - bilinear_resample(src, sampling)).abs().max() < 1e-4, (out, align_corners)
            assert (got - expected).abs().max() < 1e-2  # float32 positions: 1e-5 px x the image gradient


def test_downsizenet_on_a_full_resolution_image_and_an_lz_grid(nuscenes_image):
    """The 1600x900 nuScenes image to 0.25x: == grid_sample at the same (non-uniform) positions within 1e-4, and
    == mmcv's Resize (OpenCV, float32) up to OpenCV's own rounding for uniform positions."""
    import mmcv
    net = _net()
    src = nuscenes_image
    grid = saliency_to_grid(torch.rand(1, 1, 27, 48, generator=torch.Generator().manual_seed(0))**2 + 0.1,
                            attraction_fwhm=10.)
    for g in (identity_grid(), grid):
        sampling = zoom_sampling_grid(g, src.shape[-2:], (225, 400))
        with torch.no_grad():
            assert (net(src, sampling) - bilinear_resample(src, sampling)).abs().max() < 1e-4
    with torch.no_grad():
        out = net(src, zoom_sampling_grid(identity_grid(), src.shape[-2:], (225, 400)))[0].permute(1, 2, 0).numpy()
    assert np.abs(out - mmcv.imresize(src[0].permute(1, 2, 0).numpy(), (400, 225))).max() < 1e-2  # measured 4e-3


def test_downsizenet_learns_convex_texture_aware_coefficients(cityscapes_image):
    """The coefficients stay convex (>= 0, sum 1) once trained; the first step's gradient reaches the 1x1 conv,
    the second one the texture convolutions; a trained net differs from bilinear where the texture says so."""
    src = cityscapes_image[..., :64, :96]
    sampling = zoom_sampling_grid(identity_grid(), src.shape[-2:], (20, 30))
    for activation in ('softmax', 'sigmoid'):
        net = _net(activation=activation)
        target = F.avg_pool2d(src, 3, stride=3)[..., :20, :30]  # area-like downsizing: something to learn
        opt = torch.optim.SGD(net.parameters(), lr=1e-2)
        for step in range(2):
            opt.zero_grad()
            loss = (net(src, sampling) - target).abs().mean()
            loss.backward()
            grads = {n: p.grad for n, p in net.named_parameters()}
            assert all(torch.isfinite(g).all() for g in grads.values())
            assert float(grads['coefficients.weight'].abs().sum()) > 0
            moved = float(grads['texture.0.weight'].abs().sum()) > 0
            assert moved == (step == 1), (step, moved)
            opt.step()
        with torch.no_grad():
            a, w, _ = net.coefficient_maps(src, sampling)
        assert float(a.min()) >= 0 and torch.allclose(a.sum(1), torch.ones(()), atol=1e-5)
        assert float((a - w).abs().max()) > 1e-4


def _save(state, path):
    torch.save(dict(state_dict=state, meta=dict()), path)
    return str(path)


def test_downsizenet_checkpoints(tmp_path, cityscapes_image):
    """Transfer: a DownsizeNet trained inside another model loads through init_cfg Pretrained (prefix found or
    given, also a bare state dict); a checkpoint of another depth fails at load naming the key, through
    load_state_dict (load_from, test.py) as well as through init_cfg."""
    trained = _net(num_convs=3)
    with torch.no_grad():
        trained.coefficients.weight.normal_()
    model_state = {f'lzu_interpolation.{k}': v for k, v in trained.state_dict().items()}
    model_state['backbone.conv1.weight'] = torch.zeros(1)
    ckpt = _save(model_state, tmp_path / 'segmentor.pth')
    for prefix in (None, 'lzu_interpolation.', 'lzu_interpolation'):
        net = DownsizeNet(num_convs=3, init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix=prefix))
        net.init_weights()
        assert all(torch.equal(v, trained.state_dict()[k]) for k, v in net.state_dict().items())
    bare = _save(trained.state_dict(), tmp_path / 'bare.pth')
    net = DownsizeNet(num_convs=3, init_cfg=dict(type='Pretrained', checkpoint=bare))
    net.init_weights()
    assert torch.equal(net.coefficients.weight, trained.coefficients.weight)

    with pytest.raises(ValueError, match=r'lzu_interpolation\.texture\.6\.weight is missing'):
        DownsizeNet(num_convs=4, init_cfg=dict(type='Pretrained', checkpoint=ckpt)).init_weights()
    with pytest.raises(ValueError, match=r'texture\.0\.weight has shape \(16, 3, 3, 3\) in the checkpoint but '
                                         r'\(8, 3, 3, 3\)'):
        DownsizeNet(num_convs=3, feat_channels=8, init_cfg=dict(type='Pretrained', checkpoint=bare)).init_weights()
    with pytest.raises(ValueError, match="no DownsizeNet weights under prefix 'backbone.'"):
        DownsizeNet(num_convs=3, init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone')).init_weights()
    # a whole-model load (load_from / tools/test.py) of another depth: refused naming the key, not skipped
    model = torch.nn.Module()
    model.lzu_interpolation = DownsizeNet(num_convs=2, feat_channels=8)
    with pytest.raises(ValueError, match=r'lzu_interpolation\.texture\.0\.weight has shape'):
        model.load_state_dict(model_state, strict=False)
    from mmengine.runner.checkpoint import load_state_dict
    with pytest.raises(ValueError, match=r'lzu_interpolation\.texture\.0\.weight has shape'):
        load_state_dict(model, model_state, strict=False)
    # a checkpoint without any DownsizeNet weights (the base detector's) leaves it at its initialisation
    load_state_dict(model, {'backbone.conv1.weight': torch.zeros(1)}, strict=False)


def test_saliency_net_constant_output_is_the_identity_warp(nuscenes_image):
    """At initialisation (its 1x1 head is zero) the output is constant: the uniform saliency, whose LZ grid is the
    identity, so the zoom is the uniform resize; once the head is trained, the saliency follows the image."""
    net = SaliencyNet((27, 48), input_size=(108, 192))
    net.init_weights()
    src = torch.cat([nuscenes_image, nuscenes_image.flip(-1)])
    sal = net(src, [(900, 1600)] * 2)
    assert sal.shape == (2, 1, 27, 48) and torch.allclose(sal.sum((1, 2, 3)), torch.ones(2))
    assert float((sal.max() - sal.min()).detach()) == 0
    grid = saliency_to_grid(sal.double(), attraction_fwhm=10.)
    assert (grid - identity_grid((27, 48))).abs().max() < 1e-12
    sampling = zoom_sampling_grid(grid, src.shape[-2:], (225, 400), dtype=torch.float64)
    uniform = F.interpolate(src.double(), size=(225, 400), mode='bilinear', align_corners=False)
    assert (bilinear_resample(src.double(), sampling) - uniform).abs().max() < 1e-9
    with torch.no_grad():
        net.head.weight.normal_()
    sal = net(src, [(900, 1600)] * 2)
    assert float(sal.std()) > 0 and not torch.allclose(sal[0], sal[1])  # not constant, image-dependent


def test_saliency_net_padded_sources_and_regularisers(nuscenes_image):
    """A padded source is viewed through its valid region only; uniform_mix floors the saliency; the entropy
    regulariser is 0 for the uniform map and grows as the map concentrates."""
    net = SaliencyNet((9, 16), input_size=(36, 64), uniform_mix=0.5, entropy_weight=2.)
    with torch.no_grad():
        net.head.weight.normal_()
    src = nuscenes_image
    padded = F.pad(src, (0, 160, 0, 90))
    a, b = net(src, [(900, 1600)]), net(padded, [(900, 1600)])
    assert torch.allclose(a, b, atol=1e-6)
    assert float(a.min()) >= 0.5 / (9 * 16) - 1e-7
    uniform = torch.full((1, 1, 9, 16), 1 / 144.)
    assert float(net.loss(uniform)['loss_saliency_entropy']) < 1e-6
    peaked = torch.zeros(1, 1, 9, 16)
    peaked[..., 4, 8] = 1
    assert abs(float(net.loss(peaked)['loss_saliency_entropy']) - 2.) < 1e-4
    assert SaliencyNet((9, 16)).loss(uniform) == {}


def test_bad_configurations():
    with pytest.raises(ValueError, match='num_convs must be a positive int'):
        DownsizeNet(num_convs=0)
    with pytest.raises(ValueError, match="activation must be 'softmax' or 'sigmoid'"):
        DownsizeNet(activation='relu')
    with pytest.raises(ValueError, match='uniform_mix must be in'):
        SaliencyNet((9, 16), uniform_mix=1.)
    with pytest.raises(ValueError, match='grid_shape must be at least'):
        SaliencyNet((1, 16))
    with pytest.raises(ValueError, match="positions='uniform'.*saliency"):
        build_lzu_warp(dict(positions='uniform', saliency='uniform', grid_shape=(9, 16)))
    with pytest.raises(ValueError, match='both a fixed saliency'):
        build_lzu_warp(dict(saliency='uniform', saliency_net=dict(type='SaliencyNet'), grid_shape=(9, 16)))
    with pytest.raises(ValueError, match='grid_shape must be given'):
        build_lzu_warp(dict(saliency_net=dict(type='SaliencyNet')))
    with pytest.raises(ValueError, match='lzu.positions must be one of'):
        build_lzu_warp(dict(positions='learned'))
    with pytest.raises(ValueError, match="lzu.interpolation must be 'bilinear' or a module config"):
        build_lzu_warp(dict(positions='uniform', interpolation='bicubic'))
    with pytest.raises(ValueError, match='differs from lzu.grid_shape'):
        build_lzu_resampling(dict(saliency_net=dict(type='SaliencyNet', grid_shape=(8, 8)), grid_shape=(9, 16)))
    interp, net = build_lzu_resampling(dict(saliency_net=dict(type='SaliencyNet'), grid_shape=(9, 16),
                                            interpolation=dict(type='DownsizeNet', num_convs=3)))
    assert isinstance(interp, DownsizeNet) and interp.num_convs == 3 and net.grid_shape == (9, 16)
    assert build_lzu_warp(dict(positions='uniform')).grid_shape == (2, 2)
    assert isinstance(build_lzu_warp(dict(positions='uniform')), LZWarp)


def test_config_checks_for_the_source():
    """check_lzu_config: a photometric transform after ResizeWithSource would miss the source the model resamples;
    a model that resamples the source needs ResizeWithSource in every pipeline."""
    from lzu_mm.common import check_lzu_config
    source = [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeWithSource', scale=(64, 64)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs', meta_keys=('lzu_zoom', 'flip', 'flip_direction'))
    ]
    late = source[:2] + [dict(type='PhotoMetricDistortion')] + source[2:]
    early = source[:1] + [dict(type='PhotoMetricDistortion')] + source[1:]
    model = dict(lzu=dict(positions='uniform', interpolation=dict(type='DownsizeNet')))
    check_lzu_config(dict(model=model, train_dataloader=dict(dataset=dict(pipeline=early))))
    with pytest.raises(ValueError, match='PhotoMetricDistortion after ResizeWithSource.*move PhotoMetricDistortion '
                                         'before ResizeWithSource'):
        check_lzu_config(dict(model=model, train_dataloader=dict(dataset=dict(pipeline=late))))
    resize = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64)), dict(type='PackSegInputs')]
    for lzu in (model['lzu'], dict(saliency_net=dict(type='SaliencyNet'), grid_shape=(8, 8))):
        with pytest.raises(ValueError, match=r'val_dataloader.dataset: model.lzu.* resamples the full-resolution '
                                             'image.*ResizeWithSource'):
            check_lzu_config(dict(model=dict(lzu=lzu), train_dataloader=dict(dataset=dict(pipeline=source)),
                                  val_dataloader=dict(dataset=dict(pipeline=resize))))
    check_lzu_config(dict(model=dict(lzu=dict(positions='uniform')), val_dataloader=dict(dataset=dict(
        pipeline=resize))))  # bilinear uniform positions on a resized batch: nothing to resample
