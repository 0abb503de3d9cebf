"""Acceptance: every ``configs/lzu_fcos3d`` config through MMDetection3D's own inference APIs, self-contained.

One checkpoint is trained by ``tools/train.py`` (the LZU-fixed 0.25x config, reduced to a ResNet-18 without DCN
or pretrained weights, one iteration on one real nuScenes image) with a strongly non-uniform 27x48 saliency
written at the configs' relative path (``data/nuscenes/nuscenes_fixed_saliency.pkl``), which is then
**deleted**. Every config of the family (same FCOS3D) is loaded with ``mmdet3d.apis.init_model(config,
checkpoint)`` and run with ``inference_mono_3d_detector`` on the real CAM_FRONT image (1600x900) with the
sample's info file: the zoom's LZ grid is the checkpoint saliency's, and the 3D boxes decode with the original
image's intrinsics (``cam2img`` of the prediction = the info file's, scaled by the recorded ``scale_factor``).

``MonoDet3DInferencer`` (MMDetection3D 1.4) is checked against ``inference_mono_3d_detector`` through
:func:`mono_det3d_inferencer_infos`, a thin workaround for its camera bug (it drops the ``cam_type`` argument and
reads the intrinsics of KITTI's ``'CAM2'``; a 3x3 ``cam2img`` breaks its ``lidar2img``), without patching mmdet3d.
"""
import glob
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')

from tests.config_cache import cached_model_index  # noqa: E402
from tests.conftest import bump_saliency, shared_path  # noqa: E402
from tests.mmdet3d.utils import CONFIG_DIR, LZU_025  # noqa: E402
from tests.mmseg.conftest import load_tool  # noqa: E402

SALIENCY_REL = osp.join('data', 'nuscenes', 'nuscenes_fixed_saliency.pkl')
CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py')))
SCALE = (200, 112)  # network input (w, h) for every config, instead of 400x225 ... 1600x900
TINY = {'model.backbone.depth': 18, 'model.backbone.base_channels': 16, 'model.backbone.init_cfg': None,
        'model.backbone.dcn': None, 'model.backbone.stage_with_dcn': [False, False, False, False],
        'model.neck.in_channels': [16, 32, 64, 128], 'model.neck.out_channels': 32, 'model.bbox_head.in_channels': 32,
        'model.bbox_head.feat_channels': 32, 'load_from': None, 'model.test_cfg.score_thr': 0.0,
        'model.test_cfg.max_per_img': 20}
CAM = 'CAM_FRONT'


def bump27x48(centre=(0.5, 0.35), sigma=0.1):
    return bump_saliency((27, 48), centre, sigma)


def tiny_cfg(name: str):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    cfg.merge_from_dict(TINY)
    for step in cfg.test_dataloader.dataset.pipeline:
        if 'scale' in step:
            step['scale'] = SCALE
    return cfg


def mono_det3d_inferencer_infos(info_file: str, cam_type: str, out_file: str) -> str:
    """An info file that ``MonoDet3DInferencer`` (MMDetection3D 1.4) reads the intrinsics of ``cam_type`` from.

    Workaround, without patching mmdet3d: ``Base3DInferencer._dispatch_kwargs`` consumes the ``cam_type`` call
    argument (for the visualisation folder) instead of passing it to ``_inputs_to_list``, which therefore always
    reads ``images['CAM2']`` (KITTI's camera) from the info file -- a ``KeyError`` for nuScenes; and without a
    ``lidar2img`` it multiplies nuScenes' 3x3 ``cam2img`` by the 4x4 ``lidar2cam``. This writes a copy of
    ``info_file`` whose ``images['CAM2']`` is ``images[cam_type]`` plus its ``lidar2img`` (the inferencer's loader
    files the image under ``CAM_FRONT`` whatever its camera, with the ``cam2img`` read here) and returns its path.
    """
    import mmengine
    data = mmengine.load(info_file)
    for sample in data['data_list']:
        cam = dict(sample['images'][cam_type])
        if 'lidar2img' not in cam:  # else it computes cam2img @ lidar2cam: (3, 3) @ (4, 4) for nuScenes
            cam2img = np.eye(4)
            cam2img[:3, :3] = np.asarray(cam['cam2img'])[:3, :3]
            cam['lidar2img'] = (cam2img @ np.asarray(cam['lidar2cam'])).tolist()
        sample['images']['CAM2'] = cam
    mmengine.dump(data, out_file)
    return out_file


@pytest.fixture(scope='module', autouse=True)
def _fast_config_parsing():
    with cached_model_index():
        yield


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """tools/train.py checkpoint of the LZU-fixed 0.25x config; its saliency file deleted afterwards."""
    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    root = osp.abspath(shared_path('nuscenes'))
    work = str(tmp_path_factory.mktemp('lzu_inference_api_mmdet3d'))
    os.makedirs(osp.join(work, osp.dirname(SALIENCY_REL)))
    with open(osp.join(work, SALIENCY_REL), 'wb') as f:
        pickle.dump(bump27x48(), f)
    opts = [f'{k}={v}'.replace(' ', '') for k, v in TINY.items() if not k.startswith('model.test_cfg')]
    opts += ['train_cfg.max_epochs=1', 'train_cfg.val_begin=2', 'train_dataloader.batch_size=1',
             'train_dataloader.dataset.indices=1', 'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.save_optimizer=False',
             f'train_dataloader.dataset.pipeline.2.scale=({SCALE[0]},{SCALE[1]})',
             'visualizer.name=lzu_inference_api_mmdet3d']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
                 f'{loader}.dataset.data_root={root}', f'{loader}.dataset.ann_file=nuscenes_infos_mini.pkl']
    cwd = os.getcwd()
    os.chdir(work)
    try:
        torch.manual_seed(0)
        load_tool('tools/train.py').main([LZU_025, '--work-dir', 'work', '--cfg-options', *opts])
    finally:
        os.chdir(cwd)
    os.remove(osp.join(work, SALIENCY_REL))
    clear_checkpoint_warps()
    import mmengine
    info = osp.join(root, 'nuscenes_infos_mini.pkl')
    sample = mmengine.load(info)['data_list'][0]
    image = osp.join(root, 'samples', CAM, osp.basename(sample['images'][CAM]['img_path']))
    yield dict(work=work, ckpt=osp.join(work, 'work', 'epoch_1.pth'), image=image, info=info,
               cam2img=np.asarray(sample['images'][CAM]['cam2img'], dtype=np.float64))
    clear_checkpoint_warps()


def expected_grid():
    from lzu_mm.ops import LZWarp
    return LZWarp(bump27x48(), separable=True, attraction_fwhm=10., anti_crop=True).grid()[0].numpy()


def check_prediction(result, name, trained):
    assert tuple(result.ori_shape[:2]) == (900, 1600)
    boxes = result.pred_instances_3d.bboxes_3d.tensor
    assert len(boxes) > 0 and torch.isfinite(boxes).all()
    # the head decoded with the intrinsics of the network input: the original ones scaled by scale_factor
    sx, sy = result.scale_factor[:2]
    cam2img = np.asarray(result.cam2img, dtype=np.float64)
    assert np.allclose(cam2img[0, :3], trained['cam2img'][0, :3] * sx, rtol=1e-4)
    assert np.allclose(cam2img[1, :3], trained['cam2img'][1, :3] * sy, rtol=1e-4)
    zoom = result.metainfo.get('lzu_zoom')
    if 'lzu-fixed' in name:  # the LZ grid of the deleted saliency, from the checkpoint
        assert np.allclose(zoom['grid'], expected_grid(), atol=1e-5)
    else:
        assert zoom is None


def test_checkpoint_is_self_contained(trained):
    from lzu_mm.common import read_checkpoint_warps
    record = read_checkpoint_warps(trained['ckpt'])
    assert list(record['saliency']) == [SALIENCY_REL]
    assert torch.equal(record['saliency'][SALIENCY_REL], bump27x48())


@pytest.mark.parametrize('name', CONFIGS)
def test_inference_mono_3d_detector_every_config(name, trained, monkeypatch):
    from mmdet3d.apis import inference_mono_3d_detector, init_model

    from lzu_mm.common.checkpoint_warp import clear_checkpoint_warps
    monkeypatch.chdir(trained['work'])
    clear_checkpoint_warps()  # each config gets the saliency from loading the checkpoint itself
    model = init_model(tiny_cfg(name), trained['ckpt'], device='cpu')
    result = inference_mono_3d_detector(model, trained['image'], trained['info'], cam_type=CAM)
    check_prediction(result, name, trained)


def test_mono_det3d_inferencer_matches_inference_mono_3d_detector(trained, monkeypatch):
    from mmdet3d.apis import MonoDet3DInferencer, inference_mono_3d_detector, init_model
    monkeypatch.chdir(trained['work'])
    cfg = tiny_cfg(osp.basename(LZU_025))
    reference = inference_mono_3d_detector(init_model(cfg, trained['ckpt'], device='cpu'), trained['image'],
                                           trained['info'], cam_type=CAM)
    infos = mono_det3d_inferencer_infos(trained['info'], CAM, osp.join(trained['work'], 'cam_front_infos.pkl'))
    inferencer = MonoDet3DInferencer(model=cfg, weights=trained['ckpt'], device='cpu')
    out = inferencer(dict(img=trained['image'], infos=infos), return_datasamples=True, no_save_vis=True)
    result = out['predictions'][0]
    check_prediction(result, 'lzu-fixed', trained)
    assert torch.allclose(result.pred_instances_3d.bboxes_3d.tensor, reference.pred_instances_3d.bboxes_3d.tensor,
                          atol=1e-4)
