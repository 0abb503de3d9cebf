"""End to end on real images: KDE saliency tool -> tools/train.py -> checkpoint -> tools/test.py -> COCO metrics.

The 6-frame Argoverse-HD-format set is built from the real nuScenes camera
images (see conftest). No pretrained weights, images shrunk to 192x120 with
``--cfg-options``, one epoch: this checks that the uniform and the LZU
configs run through the standard tools, that the saved checkpoint loads
back (``torch.load(weights_only=True)`` with mmengine's numpy metadata), and
that the DDP path (``tools/dist_train.sh``, gloo, 2 processes) works.
"""
import json
import os
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys

import pytest
import torch

from .conftest import CONFIG_DIR, REPO_ROOT

SCALE = (192, 120)


def run(cmd, timeout=600, env=None):
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    full_env['PATH'] = osp.dirname(sys.executable) + os.pathsep + full_env.get('PATH', '')
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{cmd} failed ({proc.returncode}):\n{output[-6000:]}'
    return output


def cfg_options(argoverse_hd, saliency=None, batch_size=2):
    root = argoverse_hd['root']
    opts = [
        'load_from=None', 'model.backbone.init_cfg=None', 'default_hooks.logger.interval=1', 'train_cfg.max_epochs=1',
        'train_cfg.val_begin=2', f'train_dataloader.batch_size={batch_size}',
        # an untrained detector scores below mmdet's 0.05: keep its top boxes so that COCO metrics are computed
        'model.test_cfg.score_thr=0.0', 'model.test_cfg.max_per_img=20'
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False', f'{loader}.dataset.data_root={root}']
    # the resize / zoom is pipeline step 2 in training, step 1 in testing
    steps = dict(train_dataloader=2, val_dataloader=1, test_dataloader=1)
    for loader, step in steps.items():
        opts.append(f'{loader}.dataset.pipeline.{step}.scale=({SCALE[0]},{SCALE[1]})')
        if saliency:
            opts.append(f'{loader}.dataset.pipeline.{step}.saliency={saliency}')
    for evaluator in ('val_evaluator', 'test_evaluator'):
        opts.append(f'{evaluator}.ann_file={argoverse_hd["val"]}')
    return opts


@pytest.fixture(scope='module')
def kde_saliency(argoverse_hd, tmp_path_factory):
    """The dataset's fixed saliency, computed once with tools/saliency/box_kde_saliency.py."""
    out = str(tmp_path_factory.mktemp('saliency') / 'kde-sd_train_31x51.pkl')
    log = run([sys.executable, 'tools/saliency/box_kde_saliency.py', argoverse_hd['train'], out, '--grid-shape', '31',
               '51'])
    assert f"{argoverse_hd['num_boxes']} boxes" in log
    assert osp.isfile(out) and osp.isfile(out[:-4] + '.png')
    return out


@pytest.mark.parametrize('config', ['retinanet_r50_fpn_3e_argoverse-hd-0.5x.py',
                                    'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py'])
def test_train_save_test_coco_metrics(argoverse_hd, tmp_path, config, request):
    saliency = request.getfixturevalue('kde_saliency') if 'lzu' in config else None
    opts = cfg_options(argoverse_hd, saliency)
    work = str(tmp_path / 'work')
    cfg = osp.join(CONFIG_DIR, config)
    log = run([sys.executable, 'tools/train.py', cfg, '--work-dir', work, '--cfg-options', *opts])
    assert re.search(r'Epoch\(train\)\s+\[1\]\[\d+/\d+\].*loss: [0-9.]+', log), log[-3000:]
    if 'lzu' in config:
        assert 'LZURetinaNet' in open(osp.join(work, osp.basename(cfg))).read()
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    preds = str(tmp_path / 'preds.pkl')
    out = run([sys.executable, 'tools/test.py', cfg, ckpt, '--work-dir', str(tmp_path / 'test'), '--out', preds,
               '--cfg-options', *opts])
    assert re.search(r'coco/bbox_mAP: [0-9.-]+', out), out[-3000:]
    for key in ('bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l'):
        assert f'coco/{key}:' in out
    assert '| person' in out and '| car' in out  # per-class AP table (classwise=True)
    # predictions are in original-image coordinates (1600 x 900), not in the 192 x 108 network input
    with open(preds, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == argoverse_hd['num_images']
    boxes = torch.cat([r['pred_instances']['bboxes'] for r in results])
    assert float(boxes[:, 2].max()) > 2 * SCALE[0] and float(boxes[:, 2].max()) <= 1600 + 1e-3
    assert all(r['ori_shape'] == (900, 1600) for r in results)


def test_distributed_train_gloo_two_processes(argoverse_hd, tmp_path, kde_saliency):
    """tools/dist_train.sh: PyTorch DDP, gloo backend, 2 CPU processes, LZU config."""
    opts = cfg_options(argoverse_hd, kde_saliency,
                       batch_size=1) + ['env_cfg.dist_cfg.backend=gloo', 'train_dataloader.dataset.indices=4']
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    work = str(tmp_path / 'work')
    cfg = osp.join(CONFIG_DIR, 'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py')
    log = run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work, '--cfg-options', *opts],
              env=dict(PORT=str(port)))
    assert 'Distributed training: True' in log, log[-3000:]
    # 4 images, batch 1: 2 iterations per process when the 2 processes split the data (4 for a single process)
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\]', log), log[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


def test_ground_truth_through_the_lzu_test_pipeline_scores_ap_1(argoverse_hd, kde_saliency):
    """Geometry end to end: the ground-truth boxes of the LZU config's test pipeline, loaded before its zoom (so
    the zoom transform scales them into the network input's frame, as in training), mapped back with the recorded
    scale_factor as mmdet's rescale does, score exactly what the annotation file's own boxes score with the
    config's CocoMetric on the real images (0.989, not 1: the nuScenes-derived set has overlapping boxes of one
    class) -- and shifting them by 1.5 % drops it."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    import lzu_mm.mmdet  # noqa: F401
    from mmdet.registry import DATASETS, METRICS
    from mmdet.structures.bbox import scale_boxes
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py'))
    opts = dict(o.split('=', 1) for o in cfg_options(argoverse_hd, kde_saliency) if o.startswith('test_'))
    cfg.merge_from_dict({k: eval(v) if v.startswith('(') else v for k, v in opts.items()})
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] != 'LoadAnnotations']
    pipeline.insert(1, dict(type='LoadAnnotations', with_bbox=True))
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, pipeline=pipeline))
    items = pseudo_collate([dataset[i] for i in range(len(dataset))])['data_samples']
    assert all(s.lzu_zoom['img_shape'] == s.img_shape for s in items)  # zoomed, to the network input's size

    with open(argoverse_hd['val']) as f:
        annotations = json.load(f)['annotations']

    def score(boxes_of, shift=0.):
        metric = METRICS.build(cfg.test_evaluator)
        metric.dataset_meta = dataset.metainfo
        results = []
        for s in items:
            boxes = boxes_of(s)
            boxes[:, 0::2] += shift * 1600
            results.append(dict(img_id=s.img_id, ori_shape=s.ori_shape, pred_instances=dict(
                bboxes=boxes, scores=torch.ones(len(boxes)), labels=s.gt_instances.labels)))
        metric.process({}, results)
        return metric.evaluate(len(results))['coco/bbox_mAP']

    def through_pipeline(s):  # network-input frame -> original pixels, as the heads' rescale does
        return scale_boxes(s.gt_instances.bboxes.tensor.clone(), [1 / s.scale_factor[0], 1 / s.scale_factor[1]])

    def annotated(s):
        return torch.tensor([[x, y, x + w, y + h] for a in annotations if a['image_id'] == s.img_id
                             for x, y, w, h in [a['bbox']]], dtype=torch.float32)

    reference = score(annotated)
    assert reference > 0.98 and score(through_pipeline) == reference
    assert score(through_pipeline, shift=0.015) < reference - 0.1
