"""Acceptance: every ``configs/lzu_retinanet`` config through MMDetection's own inference APIs, self-contained.

One checkpoint is trained by ``tools/train.py`` (the LZU-fixed 0.5x config, reduced to a narrow ResNet-18 without
pretrained weights, one iteration on 2 images of the Argoverse-HD-format set built from the real nuScenes images,
see conftest) with a strongly non-uniform saliency written at the configs' own relative path
(``data/Argoverse/Argoverse-HD/saliency/kde-sd_train_31x51.pkl``); the file is then **deleted**. Every config of
the family (state-dict compatible: same RetinaNet; the DownsizeNet / SaliencyNet rows load it with the frameworks'
default ``strict=False``) is loaded with ``mmdet.apis.init_detector(config, checkpoint)`` and run with
``inference_detector`` on a real nuScenes camera image (1600x900): the zoom's saliency must come from the
checkpoint (the recorded LZ grid is the checkpoint saliency's), and the boxes are in original-image pixels.
``DetInferencer`` is checked against ``inference_detector`` on the trained config.

Not applicable, asserted as such: the adaptive rows (``LZUAdaptiveRetinaNet``) zoom frame t with the detections of
frame t - 1 of the same sequence; ``inference_detector`` feeds single images without sequence / frame ids, which
the model refuses with an error naming them (evaluate them with ``tools/test.py``'s online loops). The KDE SC row
builds its fixed saliency into the model at construction, before any checkpoint is loaded: its missing file is
resolvable only once a checkpoint is registered (``register_checkpoint_warps``, as ``tools/test.py`` does).
"""
import glob
import os
import os.path as osp

import numpy as np
import pytest
import torch

from tests.config_cache import cached_model_index

from .conftest import CONFIG_DIR, bump_saliency, save_pickled_saliency

TRAIN_CONFIG = 'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py'
SALIENCY_REL = osp.join('data', 'Argoverse', 'Argoverse-HD', 'saliency', 'kde-sd_train_31x51.pkl')
SCALE = (192, 120)  # (w, h) network input, instead of the configs' 960x600 etc.
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py')))
# the model reduced for CPU tests: a narrow ResNet-18 and head, no pretrained weights anywhere
TINY = {'model.backbone.depth': 18, 'model.backbone.base_channels': 16, 'model.backbone.init_cfg': None,
        'model.neck.in_channels': [16, 32, 64, 128], 'model.neck.out_channels': 32, 'model.bbox_head.in_channels': 32,
        'model.bbox_head.feat_channels': 32, 'load_from': None, 'model.test_cfg.score_thr': 0.0,
        'model.test_cfg.max_per_img': 20}


def tiny_cfg(name: str):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    cfg.merge_from_dict(TINY)
    lzu = cfg.model.get('lzu') or {}
    interp = lzu.get('interpolation') if isinstance(lzu, dict) else None
    if isinstance(interp, dict):
        interp.pop('init_cfg', None)  # downsizenet-from-pspnet: its pretrained DownsizeNet is not needed here
    for step in cfg.test_dataloader.dataset.pipeline:
        if 'scale' in step:
            step['scale'] = SCALE
    return cfg


def train_options(root: str, ann_file: str):
    opts = [f'{k}={v}' for k, v in TINY.items() if not k.startswith('model.test_cfg')]
    opts = [o.replace(' ', '') for o in opts]
    opts += ['train_cfg.max_epochs=1', 'train_cfg.val_begin=2', 'train_dataloader.batch_size=2',
             'train_dataloader.dataset.indices=2', 'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.save_optimizer=False',
             'visualizer.name=lzu_inference_api_mmdet',
             f'train_dataloader.dataset.pipeline.2.scale=({SCALE[0]},{SCALE[1]})']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False', f'{loader}.dataset.data_root={root}']
    opts += [f'val_evaluator.ann_file={ann_file}', f'test_evaluator.ann_file={ann_file}']
    return opts


@pytest.fixture(scope='module', autouse=True)
def _fast_config_parsing():
    with cached_model_index():
        yield


@pytest.fixture(scope='module')
def trained(argoverse_hd, tmp_path_factory):
    """tools/train.py checkpoint of the LZU-fixed config; its saliency file deleted afterwards."""
    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    from tests.mmseg.conftest import load_tool
    work = str(tmp_path_factory.mktemp('lzu_inference_api'))
    saliency = bump_saliency((31, 51), centre=(0.55, 0.3), sigma=0.1)
    os.makedirs(osp.join(work, osp.dirname(SALIENCY_REL)))
    save_pickled_saliency(saliency, osp.join(work, SALIENCY_REL))
    cwd = os.getcwd()
    os.chdir(work)  # the config's relative saliency path, as in a checkout with data/
    try:
        torch.manual_seed(0)
        load_tool('tools/train.py').main([osp.join(CONFIG_DIR, TRAIN_CONFIG), '--work-dir', 'work', '--saliency',
                                          SALIENCY_REL, '--cfg-options',
                                          *train_options(argoverse_hd['root'], argoverse_hd['val'])])
    finally:
        os.chdir(cwd)
    os.remove(osp.join(work, SALIENCY_REL))
    clear_checkpoint_warps()  # nothing registered yet: loading the checkpoint must bring the saliency
    image = osp.join(argoverse_hd['root'], 'Argoverse-1.1', 'tracking')
    images = sorted(glob.glob(osp.join(image, '**', '*.jpg'), recursive=True))
    yield dict(work=work, ckpt=osp.join(work, 'work', 'epoch_1.pth'), saliency=saliency, image=images[0])
    clear_checkpoint_warps()


def expected_grid(saliency):
    from lzu_mm.ops import LZWarp
    return LZWarp(saliency, separable=True, attraction_fwhm=10., anti_crop=True).grid()[0].numpy()


def check_boxes(result):
    assert result.ori_shape == (900, 1600)
    boxes = result.pred_instances.bboxes
    assert len(boxes) > 0
    # original-image pixels (1600 x 900), not the 192 x 108 network input
    assert float(boxes[:, 2].max()) > 2 * SCALE[0] and float(boxes[:, 2].max()) <= 1600 + 1e-3
    assert float(boxes[:, 3].max()) <= 900 + 1e-3 and float(boxes.min()) >= -1e-3


def test_checkpoint_is_self_contained(trained):
    from lzu_mm.common import read_checkpoint_warps
    record = read_checkpoint_warps(trained['ckpt'])
    assert list(record['saliency']) == [SALIENCY_REL]
    assert torch.equal(record['saliency'][SALIENCY_REL], trained['saliency'])
    assert not osp.exists(osp.join(trained['work'], SALIENCY_REL))


@pytest.mark.parametrize('name', CONFIGS)
def test_inference_detector_every_config(name, trained, monkeypatch):
    from mmdet.apis import inference_detector, init_detector

    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    monkeypatch.chdir(trained['work'])
    clear_checkpoint_warps()  # each config gets the saliency from loading the checkpoint itself
    cfg = tiny_cfg(name)
    if 'adaptive' in name:  # online: frame t is zoomed with frame t - 1's detections; single images are refused
        from lzu_mm.common import register_checkpoint_warps
        register_checkpoint_warps(trained['ckpt'])  # KDE SC: its fixed part is needed when the model is built
        with pytest.raises(ValueError, match=r"no \['sid', 'fid'\] in its metainfo: online adaptive saliency"):
            inference_detector(init_detector(cfg, trained['ckpt'], device='cpu'), trained['image'])
        return
    model = init_detector(cfg, trained['ckpt'], device='cpu')
    result = inference_detector(model, trained['image'])
    check_boxes(result)
    zoom = result.metainfo.get('lzu_zoom')
    if 'lzu-fixed' in name or 'fovea-fixed' in name:  # the LZ grid of the (deleted) saliency, from the checkpoint
        assert np.allclose(zoom['grid'], expected_grid(trained['saliency']), atol=1e-5)
    elif 'lzu-learned' in name:  # the LZ grid of the saliency network's prediction for this image
        assert zoom['grid'].shape == (31, 51, 2) and 'saliency' in zoom
        assert not np.allclose(zoom['grid'], expected_grid(trained['saliency']), atol=1e-3)
    elif 'downsizenet' in name:  # uniform positions, learned interpolation: the identity grid
        assert np.allclose(zoom['grid'], expected_grid(torch.ones(1, 1, 2, 2) / 4), atol=1e-5)
    else:
        assert zoom is None


def test_det_inferencer_matches_inference_detector(trained, monkeypatch):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    monkeypatch.chdir(trained['work'])
    cfg = tiny_cfg(TRAIN_CONFIG)
    reference = inference_detector(init_detector(cfg, trained['ckpt'], device='cpu'), trained['image'])
    inferencer = DetInferencer(model=cfg, weights=trained['ckpt'], device='cpu', show_progress=False)
    out = inferencer(trained['image'], return_datasamples=True, no_save_vis=True, pred_score_thr=0.)
    result = out['predictions'][0]
    check_boxes(result)
    assert torch.allclose(result.pred_instances.bboxes, reference.pred_instances.bboxes, atol=1e-3)
    assert np.allclose(result.metainfo['lzu_zoom']['grid'], expected_grid(trained['saliency']), atol=1e-5)
