"""tools/train.py -> checkpoint -> tools/test.py -> nuScenes mAP / NDS, on the real sample (CPU, no weights).

The uniform and the LZU-fixed 0.25x FCOS3D configs (400x225) run through the
standard tools for one epoch of 2 images (2 iterations), the checkpoint is
loaded back by ``tools/test.py`` and the 6 images are scored with
``NuScenesSubsetMetric``.
"""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

import pytest

pytest.importorskip('mmdet3d')
pytest.importorskip('nuscenes')

from tests.conftest import REPO_ROOT  # noqa: E402
from tests.mmdet3d.utils import LZU_025, UNIFORM_025  # noqa: E402

PREFIX = 'NuScenes metric/pred_instances_3d_NuScenes'  # BaseMetric prefix / NuScenesMetric key


def run(cmd, timeout=900):
    start = time.time()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{cmd} failed ({proc.returncode}):\n{output[-6000:]}'
    print(f'{cmd[1]}: {time.time() - start:.1f} s')
    return output


def cfg_options(root, saliency=None):
    # random weights after 2 iterations score below the config's 0.05: keep the top boxes to score them
    opts = ['load_from=None', 'model.backbone.init_cfg=None', 'default_hooks.logger.interval=1',
            'model.test_cfg.score_thr=0.0', 'model.test_cfg.max_per_img=20',
            'train_cfg.max_epochs=1', 'train_cfg.val_begin=2', 'train_dataloader.batch_size=1',
            'train_dataloader.dataset.indices=2']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
                 f'{loader}.dataset.data_root={root}', f'{loader}.dataset.ann_file=nuscenes_infos_mini.pkl']
    if saliency:  # the zoom is pipeline step 2 in training, step 1 in testing
        opts += [f'train_dataloader.dataset.pipeline.2.saliency={saliency}',
                 f'val_dataloader.dataset.pipeline.1.saliency={saliency}',
                 f'test_dataloader.dataset.pipeline.1.saliency={saliency}']
    for evaluator in ('val_evaluator', 'test_evaluator'):
        opts += [f'{evaluator}.type=NuScenesSubsetMetric', f'{evaluator}.data_root={root}',
                 f'{evaluator}.ann_file={root}/nuscenes_infos_mini.pkl']
    return opts


@pytest.mark.parametrize('config', [UNIFORM_025, LZU_025], ids=['uniform-0.25x', 'lzu-fixed-0.25x'])
def test_train_save_test_nuscenes_metrics(nuscenes_root, official_nuscenes_saliency, tmp_path, config):
    lzu = 'lzu-fixed' in config
    opts = cfg_options(nuscenes_root, official_nuscenes_saliency if lzu else None)
    work = str(tmp_path / 'work')
    log = run([sys.executable, 'tools/train.py', config, '--work-dir', work, '--cfg-options', *opts])
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\].*loss: [0-9.]+', log), log[-3000:]
    dumped = open(osp.join(work, osp.basename(config))).read()
    assert ('LZUFCOSMono3D' in dumped) == lzu and ('FixedSaliencyZoom3D' in dumped) == lzu
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    test_dir = str(tmp_path / 'test')
    out = run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir', test_dir, '--cfg-options', *opts])
    assert re.search(rf'{PREFIX}/NDS: [0-9.]+', out), out[-3000:]
    logs = [json.load(open(f)) for f in glob.glob(osp.join(test_dir, '*', '*.json'))]
    metrics = [m for m in logs if f'{PREFIX}/NDS' in m]
    assert len(metrics) == 1, logs
    for key in ('mAP', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE', 'NDS'):
        assert 0. <= metrics[0][f'{PREFIX}/{key}'] < float('inf'), (key, metrics[0])
    assert metrics[0][f'{PREFIX}/mAP'] <= 1 and metrics[0][f'{PREFIX}/NDS'] <= 1


def test_boxes_decoded_in_the_lzu_network_frame_score_ap_1(nuscenes_root, official_nuscenes_saliency):
    """Geometry end to end: each object's centre, projected into the zoomed network input by the LZU pipeline
    (centers_2d, depths, the zoomed cam2img), decodes back to 3D with mmdet3d's points_img2cam -- the FCOS3D head's
    decoding -- within 1 mm; boxes rebuilt from those centres score nuScenes AP = 1 for every class present, and
    decoding with the intrinsics of the original image (the rescale bug class) does not."""
    import copy

    import numpy as np
    import torch

    from mmdet3d.structures.bbox_3d.utils import points_img2cam
    from tests.mmdet3d.test_metric import _evaluate, _gt_as_predictions, _metric, _present_classes
    from tests.mmdet3d.utils import LOAD_ANNOTATIONS, nuscenes_mono3d_dataset, unpacked_samples, zoom_cfg

    plain = nuscenes_mono3d_dataset(nuscenes_root, [])
    zoomed = unpacked_samples(nuscenes_mono3d_dataset(nuscenes_root, [
        dict(type='LoadImageFromFileMono3D', backend_args=None), LOAD_ANNOTATIONS, zoom_cfg(official_nuscenes_saliency)
    ]))
    reference = _gt_as_predictions(plain, evaluated_only=True)

    def decoded(original_intrinsics=False):
        out = copy.deepcopy(_gt_as_predictions(plain, evaluated_only=False))
        for pred, sample, info in zip(out, zoomed, (plain.get_data_info(i) for i in range(len(plain)))):
            assert sample['lzu_zoom']['img_shape'] == sample['img_shape'] == (225, 400)
            cam2img = np.asarray(info['images'][next(iter(info['images']))]['cam2img'] if original_intrinsics
                                 else sample['cam2img'])
            uvd = torch.cat([torch.as_tensor(sample['centers_2d']), torch.as_tensor(sample['depths'])[:, None]], 1)
            centres = points_img2cam(uvd.float(), torch.as_tensor(cam2img[:3, :3], dtype=torch.float32))
            boxes = pred['pred_instances_3d']['bboxes_3d']
            if not original_intrinsics:
                assert (centres - boxes.gravity_center).abs().max() < 1e-3  # metres
            boxes.tensor[:, :3] = centres + boxes.tensor[:, 3:6] * torch.tensor([0., 0.5, 0.])  # bottom centre
        return [_keep_evaluated(p, r) for p, r in zip(out, reference)]

    metric = dict(cross_camera_nms=dict(nms_thr=0.5))
    present = _present_classes(nuscenes_root)
    results = _evaluate(_metric(nuscenes_root, plain, **metric), decoded())
    for name in present:
        assert results[f'{PREFIX}/{name}_AP_dist_0.5'] == 1.0, name
    off = _evaluate(_metric(nuscenes_root, plain, **metric), decoded(original_intrinsics=True))
    assert max(off[f'{PREFIX}/{name}_AP_dist_0.5'] for name in present) < 0.5


def _keep_evaluated(pred, reference):
    """``pred`` restricted to the objects of ``reference`` (those nuScenes evaluates), matched by their size."""
    boxes, ref = pred['pred_instances_3d']['bboxes_3d'], reference['pred_instances_3d']['bboxes_3d']
    keep = (boxes.tensor[:, None, 3:6] == ref.tensor[None, :, 3:6]).all(-1).any(1)
    inst = pred['pred_instances_3d']
    return dict(pred, pred_instances_3d=dict(bboxes_3d=boxes[keep], scores_3d=inst['scores_3d'][keep],
                                             labels_3d=inst['labels_3d'][keep], attr_labels=inst['attr_labels'][keep]))
