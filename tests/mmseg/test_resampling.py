"""LZUEncoderDecoder resampling the full-resolution crop itself: DownsizeNet's bilinear start against the pipeline's
Resize on the real Cityscapes sample, the learned-saliency + DownsizeNet geometry (position-encoding harness, P2-P5),
and the new configs."""
import copy
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS, TRANSFORMS

import lzu_mm.mmseg  # noqa: F401
from lzu_mm.common import check_lzu_config
from tests.mmseg.conftest import CONFIG_DIR, config_path
from tests.position_harness import assert_geometry, build_pipeline, coordinate_samples, geometry_report

STRIDES = (4, 8, 16, 32)
META = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip', 'flip_direction',
        'reduce_zero_label', 'lzu_zoom')


def _crop_batch(model, sample_paths, resize_type):
    """The real sample (float32), centre-cropped to 128x128 and resized to 64x64, preprocessed for ``model``."""
    steps = [dict(type='LoadImageFromFile', to_float32=True), dict(type='CenterSquareCrop'),
             dict(type=resize_type, scale=(64, 64), keep_ratio=False), dict(type='LoadAnnotations'),
             dict(type='CenterSquareCrop', keys=('gt_seg_map', )), dict(type='PackSegInputs', meta_keys=META)]
    results = dict(img_path=sample_paths['img'], seg_map_path=sample_paths['seg'], reduce_zero_label=False,
                   seg_fields=[])
    for step in steps:
        results = TRANSFORMS.build(step)(results)
    data = model.data_preprocessor(dict(inputs=[results['inputs']], data_samples=[results['data_samples']]), False)
    return data['inputs'], data['data_samples']


@torch.no_grad()
@pytest.mark.parametrize('interpolation', ['bilinear', dict(type='DownsizeNet', num_convs=3)])
def test_uniform_positions_equal_the_pipeline_resize(sample_paths, interpolation):
    """Uniform positions, bilinear or DownsizeNet at initialisation: the segmentor's logits at the crop's resolution
    are EncoderDecoder's on the pipeline's Resize (same float32 crop) within 1e-4."""
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py')).model
    cfg.pretrained = None
    torch.manual_seed(0)
    plain = revert_sync_batchnorm(MODELS.build(copy.deepcopy(cfg))).eval()
    ours = revert_sync_batchnorm(MODELS.build(dict(copy.deepcopy(cfg), type='LZUEncoderDecoder', lzu=dict(
        positions='uniform', interpolation=interpolation)))).eval()
    ours.init_weights()
    ours.load_state_dict(plain.state_dict(), strict=False)
    ref = plain.predict(*_crop_batch(plain, sample_paths, 'Resize'))[0].seg_logits.data
    out = ours.predict(*_crop_batch(ours, sample_paths, 'ResizeWithSource'))[0].seg_logits.data
    assert ref.shape == out.shape == (19, 128, 128)
    assert (out - ref).abs().max().item() <= 1e-4


def test_learned_saliency_and_downsizenet_geometry():
    """The harness on the learned path of PSPNet-FPN (P2-P5): a perturbed saliency net's per-sample grids and a
    perturbed DownsizeNet, a 256x256 source zoomed to 64x64, flipped and unflipped samples."""
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_lzu-learned_4xb2-80k_cityscapes-256x256.py'))
    cfg.test_pipeline = [t if t['type'] != 'ResizeWithSource' else dict(t, scale=(64, 64)) for t in cfg.test_pipeline]

    def build(frame):
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.backbone = dict(type='CoordinateFeatures', out_strides=STRIDES, frame=frame)
        model_cfg.neck = None
        model_cfg.pretrained = None
        model_cfg.data_preprocessor.update(mean=[0., 0., 0.], std=[1., 1., 1.], size=(64, 64))
        model_cfg.lzu.saliency_net.input_size = (64, 64)
        model_cfg.lzu.interpolation = dict(type='DownsizeNet')
        torch.manual_seed(0)
        model = MODELS.build(model_cfg).eval()
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            model.lzu_saliency_net.head.weight.normal_(std=6., generator=gen)
            model.lzu_interpolation.coefficients.weight.normal_(std=0.05, generator=gen)
        return model

    run = build_pipeline(TRANSFORMS, cfg.test_pipeline, None, dict(type='RandomFlip', prob=1.))
    samples = [coordinate_samples(run, (256, 256), (64, 64), [flip])[0] for flip in ('horizontal', None)]
    assert samples[0]['data_samples'].lzu_zoom['image'].shape == (256, 256, 3)
    report = geometry_report(build, samples, STRIDES)
    assert_geometry(report)  # measured: content <= 0.022 cell, frame <= 1.7e-6 cell
    model = build(True)
    data = model.data_preprocessor(dict(inputs=[s['inputs'] for s in copy.deepcopy(samples)],
                                        data_samples=[s['data_samples'] for s in copy.deepcopy(samples)]), False)
    with torch.no_grad(), model.lzu_context(data['inputs'], data['data_samples']):
        grid = model._lzu_state.grid
    from lzu_mm.ops import identity_grid
    assert float((grid - identity_grid((32, 32))).abs().max()) > 0.03  # a real warp: the check is not vacuous


NEW_CONFIGS = sorted(
    osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py'))
    if any(k in osp.basename(p) for k in ('downsizenet', 'lzu-learned')))


def test_new_configs_are_all_here():
    assert NEW_CONFIGS == [
        'pspnet_r50-fpn_downsizenet_4xb2-80k_cityscapes-256x256.py',
        'pspnet_r50-fpn_downsizenet_4xb2-80k_cityscapes-512x512.py',
        'pspnet_r50-fpn_lzu-fixed-downsizenet_4xb2-80k_cityscapes-256x256.py',
        'pspnet_r50-fpn_lzu-fixed-downsizenet_4xb2-80k_cityscapes-512x512.py',
        'pspnet_r50-fpn_lzu-learned_4xb2-80k_cityscapes-256x256.py'
    ]


@pytest.mark.parametrize('name', NEW_CONFIGS)
def test_config_builds_and_passes_the_checks(name, tmp_path):
    """Each config passes check_lzu_config (ResizeWithSource everywhere, photometric steps before it) and builds
    its model (a saliency file stands in for the boundary saliency)."""
    cfg = Config.fromfile(config_path(name))
    check_lzu_config(cfg)
    lzu = cfg.model.lzu
    if isinstance(lzu.get('saliency'), str):
        from lzu_mm.ops import uniform_saliency
        path = str(tmp_path / 'sal.pth')
        torch.save(uniform_saliency(lzu.grid_shape), path)
        lzu.saliency = path
    model = MODELS.build(dict(cfg.model, pretrained=None))
    assert type(model).__name__ == 'LZUEncoderDecoder'
    assert (model.lzu_interpolation is not None) == ('downsizenet' in name)
    assert (model.lzu_saliency_net is not None) == ('learned' in name)
    assert f"{int(name.split('-')[-1].split('x')[0])}" in str(cfg.train_dataloader.dataset.pipeline[4]['scale'])
    if 'lzu-fixed-downsizenet' in name:  # the warp of the LZU-fixed row, zoomed model-side
        assert cfg.lzu_zoom == Config.fromfile(config_path(name.replace('-downsizenet', ''))).lzu_zoom


@torch.no_grad()
def test_panels_show_the_learned_saliency_and_downsizenet_coefficients(sample_paths):
    """LZUVisualizationHook on a learned-saliency + DownsizeNet segmentor's prediction of the real sample: the
    saliency panel is the model's per-image saliency, the zoomed image is DownsizeNet's, and its coefficient maps
    and departure from bilinear are drawn; the summary reports it."""
    from types import SimpleNamespace

    from lzu_mm.visualization import LZUVisualizationHook, compute_warp_panels
    from lzu_mm.visualization.hook import read_rgb
    cfg = Config.fromfile(config_path('pspnet_r50-fpn_lzu-learned_4xb2-80k_cityscapes-256x256.py'))
    cfg.model.update(pretrained=None)
    cfg.model.backbone.update(depth=18)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.model.lzu.update(interpolation=dict(type='DownsizeNet'))
    cfg.model.lzu.saliency_net.input_size = (64, 64)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    model.init_weights()
    gen = torch.Generator().manual_seed(1)
    model.lzu_saliency_net.head.weight.normal_(std=3., generator=gen)
    model.lzu_interpolation.coefficients.weight.normal_(std=0.5, generator=gen)
    inputs, samples = _crop_batch(model, sample_paths, 'ResizeWithSource')
    pred = model.predict(inputs, samples)[0]
    record = pred.lzu_zoom
    assert record['saliency'].shape == (32, 32) and record['grid'].shape == (32, 32, 2)
    from mmseg.datasets import CityscapesDataset

    from lzu_mm.visualization.framework import build_framework_visualizer
    visualizer = build_framework_visualizer(cfg, CityscapesDataset.METAINFO)  # the config's LZUSegLocalVisualizer
    runner = SimpleNamespace(model=model, cfg=cfg, visualizer=visualizer)
    hook = LZUVisualizationHook(interval=1)
    fig = hook.figure_for(runner, pred)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    for key in ('learned saliency of this image (32×32 grid)', 'DownsizeNet coefficients a1..a4',
                'DownsizeNet − bilinear', 'zoomed image 64×64', 'predictions'):
        assert any(key in t for t in titles), (key, titles)
    # the zoomed panel is DownsizeNet's output; the deviation is that of the model's coefficients
    image = read_rgb(sample_paths['img'])[:, 64:192]  # the centred 128x128 crop of the 128x256 sample
    zoomed, a, w = hook._learned_zoom(model.lzu_interpolation, image, record['grid'], (64, 64), False)
    panels = compute_warp_panels(image, record['grid'], (64, 64), record['saliency'], zoomed=zoomed,
                                 coefficients=a, bilinear=w, saliency_kind='learned')
    summary = panels.summary()
    assert 0.01 < summary['interpolation_vs_bilinear_mean'] <= summary['interpolation_vs_bilinear_max'] <= 1
    assert np.abs(panels.zoomed.astype(float) - panels.uniform.astype(float)).mean() > 0.5  # not the bilinear zoom
    assert np.allclose(a.sum(0), 1, atol=1e-5) and a.min() >= 0
