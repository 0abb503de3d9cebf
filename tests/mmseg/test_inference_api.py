"""Acceptance: every ``configs/lzu_pspnet`` config through MMSegmentation's own inference APIs, self-contained.

One checkpoint is trained by ``tools/train.py`` (the LZU-fixed 64x64 config, reduced to a narrow ResNet-18 without
pretrained weights, one iteration on the real Cityscapes sample laid out as the configs expect, see conftest)
with a strongly non-uniform 32x32 saliency written at the configs' relative path
(``data/cityscapes/lzu/boundary_saliency_32x32.pkl``), which is then **deleted**. Every config of the family
(same PSPNet; the DownsizeNet / SaliencyNet rows load it with ``strict=False``) is loaded with
``mmseg.apis.init_model(config, checkpoint)`` and run with ``inference_model`` on the real image: the test
pipeline has no labels (the API drops ``LoadAnnotations``; the label-only ``CenterSquareCrop`` passes through),
the zoom's LZ grid is the checkpoint's saliency's, and the class map comes back at the resolution of the
experiment's original image (the centred 128x128 square of the 256x128 sample). ``MMSegInferencer`` is checked
against ``inference_model`` on the trained config.
"""
import glob
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from tests.config_cache import cached_model_index
from tests.conftest import bump_saliency, shared_path
from tests.mmseg.conftest import CONFIG_DIR, SALIENCY_REL, SAMPLE, build_cityscapes_layout, load_tool

TRAIN_CONFIG = 'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py'
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py')))
TINY = {'model.backbone.depth': 18, 'model.backbone.stem_channels': 16, 'model.backbone.base_channels': 16,
        'model.pretrained': None, 'model.neck.in_channels': [16, 32, 64, 128], 'model.neck.out_channels': 32,
        'model.decode_head.in_channels': 32, 'model.decode_head.channels': 32, 'model.auxiliary_head.in_channels': 32,
        'model.auxiliary_head.channels': 16, 'load_from': None}
CROP = 128  # the centred square of the 256x128 sample: the experiment's original image


def bump32(centre=(0.45, 0.6), sigma=0.1):
    return bump_saliency((32, 32), centre, sigma)


def tiny_cfg(name: str):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    cfg.merge_from_dict(TINY)
    return cfg


@pytest.fixture(scope='module', autouse=True)
def _fast_config_parsing():
    with cached_model_index():
        yield


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """tools/train.py checkpoint of the LZU-fixed 64x64 config; its saliency file deleted afterwards."""
    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    cityscapes = shared_path('cityscapes')
    work = str(tmp_path_factory.mktemp('lzu_inference_api_mmseg'))
    layout = build_cityscapes_layout(osp.abspath(cityscapes), work)
    os.makedirs(osp.dirname(layout['saliency']), exist_ok=True)
    with open(layout['saliency'], 'wb') as f:
        pickle.dump(bump32(), f)
    opts = [f'{k}={v}'.replace(' ', '') for k, v in TINY.items()]
    opts += ['train_cfg.max_iters=1', 'train_cfg.val_interval=1000', 'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.save_best=None',
             'default_hooks.checkpoint.save_optimizer=False',
             'visualizer.name=lzu_inference_api_mmseg']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    cwd = os.getcwd()
    os.chdir(work)  # the configs' relative data/cityscapes/... paths
    try:
        torch.manual_seed(0)
        load_tool('tools/train.py').main([osp.join(CONFIG_DIR, TRAIN_CONFIG), '--work-dir', 'work',
                                          '--cfg-options', *opts])
    finally:
        os.chdir(cwd)
    os.remove(layout['saliency'])
    clear_checkpoint_warps()
    image = osp.join(cityscapes, 'leftImg8bit', 'val', SAMPLE + '_leftImg8bit.png')
    yield dict(work=work, ckpt=osp.join(work, 'work', 'iter_1.pth'), image=image)
    clear_checkpoint_warps()


def expected_grid():
    from lzu_mm.ops import LZWarp
    return LZWarp(bump32(), separable=True, attraction_fwhm=10., anti_crop=True).grid()[0].numpy()


def check_prediction(result, name):
    assert tuple(result.pred_sem_seg.shape) == (CROP, CROP)  # the crop's full resolution
    assert result.seg_logits.data.shape[-2:] == (CROP, CROP)
    zoom = result.metainfo.get('lzu_zoom')
    if 'lzu-fixed' in name:  # the LZ grid of the deleted saliency, from the checkpoint
        assert np.allclose(zoom['grid'], expected_grid(), atol=1e-5)
    elif 'lzu-learned' in name:  # the saliency network's own grid
        assert zoom['grid'].shape[-1] == 2 and not np.allclose(zoom['grid'], expected_grid(), atol=1e-3)
    elif 'downsizenet' not in name:
        assert zoom is None


def test_checkpoint_is_self_contained(trained):
    from lzu_mm.common import read_checkpoint_warps
    record = read_checkpoint_warps(trained['ckpt'])
    assert list(record['saliency']) == [SALIENCY_REL] and torch.equal(record['saliency'][SALIENCY_REL], bump32())
    assert not osp.exists(osp.join(trained['work'], SALIENCY_REL))


@pytest.mark.parametrize('name', CONFIGS)
def test_inference_model_every_config(name, trained, monkeypatch):
    from mmseg.apis import inference_model, init_model

    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    monkeypatch.chdir(trained['work'])
    clear_checkpoint_warps()  # each config gets the saliency from loading the checkpoint itself
    model = init_model(tiny_cfg(name), trained['ckpt'], device='cpu')
    check_prediction(inference_model(model, trained['image']), name)


def test_mmseg_inferencer_matches_inference_model(trained, monkeypatch):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    monkeypatch.chdir(trained['work'])
    cfg = tiny_cfg(TRAIN_CONFIG)
    reference = inference_model(init_model(cfg, trained['ckpt'], device='cpu'), trained['image'])
    inferencer = MMSegInferencer(model=cfg, weights=trained['ckpt'], device='cpu')
    out = inferencer(trained['image'], return_datasamples=True)
    result = out[0] if isinstance(out, list) else out
    check_prediction(result, TRAIN_CONFIG)
    assert torch.equal(result.pred_sem_seg.data, reference.pred_sem_seg.data)
    # its visualisation paints the prediction on the centre crop of the frame (LZUSegLocalVisualizer, crop_box)
    painted = inferencer(trained['image'], return_vis=True)['visualization']  # one image: its array
    assert painted.shape == (CROP, CROP, 3)


def test_tools_test_and_demo_without_the_saliency_file(trained, monkeypatch, tmp_path):
    """``tools/test.py CONFIG CHECKPOINT`` (whose Runner builds the test pipeline before loading the checkpoint) and
    ``demo/lzu_demo.py IMAGE CONFIG CHECKPOINT`` read the missing saliency from the checkpoint."""
    import json

    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    monkeypatch.chdir(trained['work'])
    config = osp.join(CONFIG_DIR, TRAIN_CONFIG)
    options = [f'{k}={v}'.replace(' ', '') for k, v in TINY.items()] + [
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    clear_checkpoint_warps()
    load_tool('tools/test.py').main([config, trained['ckpt'], '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                                     *options, 'visualizer.name=lzu_inference_api_test'])
    logs = glob.glob(str(tmp_path / 'test' / '*' / '*.json'))
    metrics = [json.load(open(f)) for f in logs]
    assert len(metrics) == 1 and 0. <= metrics[0]['mIoU'] <= 100., metrics
    clear_checkpoint_warps()
    demo = load_tool('demo/lzu_demo.py')
    demo.main([trained['image'], config, trained['ckpt'], '--out-dir', str(tmp_path / 'demo'), '--cfg-options',
               *options[:-2]])
    with open(tmp_path / 'demo' / 'summary.json') as f:
        summary = json.load(f)
    assert summary['warp_from'] == 'pipeline' and summary['predictions']['sem_seg_shape'] == [CROP, CROP]
