"""Adaptive saliency on video, end to end on real images: tools/train.py (jittered GT, then cascade; LKDE) ->
checkpoint -> tools/test.py online (1 and 2 processes, batch 1 and 2) -> audited records.

Two Argoverse-HD-format sequences of 4 frames are made from the 6 real nuScenes camera images (frames of
cameras 0-3 and 2-5). The model is the LKDE config (it contains the adaptive KDE SI path) with a ResNet-18, one head
convolution and a 192x108 network input, trained 2 epochs of 2 iterations.
"""
import json
import os.path as osp
import pickle
import re
import socket
import sys

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import lzu_mm.common  # noqa: F401  (mmengine's loaders read mmengine checkpoints)
from lzu_mm.ops import bbox_kde_saliency

from .conftest import CONFIG_DIR
from .test_train_test_e2e import run

CONFIG = osp.join(CONFIG_DIR, 'retinanet_r50_fpn_lzu-adaptive-lkde_3e_argoverse-hd-0.5x.py')
SCALE = (192, 120)
FRAMES = ((0, 1, 2, 3), (2, 3, 4, 5))  # camera images of each sequence, in frame order


@pytest.fixture(scope='module')
def video(argoverse_hd, tmp_path_factory):
    """Two 4-frame sequences over the real camera images of the Argoverse-HD-format set (same image folder)."""
    with open(argoverse_hd['val']) as f:
        single = json.load(f)
    by_fid = {img['fid']: img for img in single['images']}
    images, annotations = [], []
    for sid, cams in enumerate(FRAMES):
        for fid, cam in enumerate(cams):
            image_id = len(images)
            images.append(dict(by_fid[cam], id=image_id, sid=sid, fid=fid))
            for ann in single['annotations']:
                if ann['image_id'] == by_fid[cam]['id']:
                    annotations.append(dict(ann, id=len(annotations), image_id=image_id))
    data = dict(single, images=images, annotations=annotations, sequences=['seq_a', 'seq_b'],
                seq_dirs=single['seq_dirs'] * 2)
    path = str(tmp_path_factory.mktemp('video') / 'video.json')
    with open(path, 'w') as f:
        json.dump(data, f)
    return dict(root=argoverse_hd['root'], ann=path, images=images)


def options(video, batch_size=1, interleave=1):
    opts = [
        'load_from=None', 'model.backbone.depth=18', 'model.backbone.init_cfg=None',
        'model.neck.in_channels=[64,128,256,512]',
        'model.bbox_head.stacked_convs=1', 'model.bbox_head.feat_channels=64', 'default_hooks.logger.interval=1',
        'train_cfg.max_epochs=2', 'train_cfg.val_begin=2', 'custom_hooks.0.begin_epoch=2',
        'train_dataloader.batch_size=4', 'model.adaptive.record_saliency=True',
        # an untrained detector scores below mmdet's 0.05: keep its top 20 boxes, which feed the next frame
        'model.test_cfg.score_thr=0.0', 'model.test_cfg.max_per_img=20',
        f'test_dataloader.batch_size={batch_size}', f'test_dataloader.sampler.interleave={interleave}',
        'test_evaluator.ann_file=' + video['ann'], 'val_evaluator.ann_file=' + video['ann']]
    for loader, step in (('train_dataloader', 2), ('val_dataloader', 1), ('test_dataloader', 1)):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
                 f'{loader}.dataset.data_root={video["root"]}', f'{loader}.dataset.ann_file={video["ann"]}',
                 f'{loader}.dataset.pipeline.{step}.scale=({SCALE[0]},{SCALE[1]})']
    return opts


@pytest.fixture(scope='module')
def checkpoint(video, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('train'))
    log = run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', work, '--cfg-options', *options(video)])
    return osp.join(work, 'epoch_2.pth'), log


def test_training_switches_to_the_cascade_and_learns_the_kde(checkpoint):
    ckpt, log = checkpoint
    first = log.index('Epoch 1: adaptive saliency from jittered ground-truth boxes')
    second = log.index("Epoch 2: adaptive saliency from the model's own jittered detections (cascaded saliency) -- "
                       'switched')
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\].*loss: [0-9.]+', log[first:second]), log[-3000:]
    assert re.search(r'Epoch\(train\)\s+\[2\]\[2/2\].*loss: [0-9.]+', log[second:]), log[-3000:]
    # validation after epoch 2 runs online too (the config's OnlineValLoop and SequenceSampler)
    assert 'OnlineValLoop: 2 sequences, 8 frames on process 0 of 1' in log[second:]
    assert re.search(r'Epoch\(val\) \[2\]\[8/8\].*coco/bbox_mAP: [0-9.-]+', log), log[-3000:]
    state = _load_checkpoint(ckpt, map_location='cpu')['state_dict']
    for name in ('lzu_saliency.bandwidth', 'lzu_saliency.amplitude'):  # LKDE: moved from 0, finite
        assert torch.isfinite(state[name]).all() and float(state[name].abs()) > 0, (name, state[name])


def _test(video, ckpt, tmp_path, name, procs=1, **kwargs):
    out = str(tmp_path / f'{name}.pkl')
    args = [ckpt, '--work-dir', str(tmp_path / name), '--out', out, '--cfg-options', *options(video, **kwargs)]
    if procs == 1:
        log = run([sys.executable, 'tools/test.py', CONFIG, *args])
    else:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        log = run(['bash', 'tools/dist_test.sh', CONFIG, *args[:1], str(procs), *args[1:],
                   'env_cfg.dist_cfg.backend=gloo'], env=dict(PORT=str(port)))
    assert re.search(r'coco/bbox_mAP: [0-9.-]+', log), log[-3000:]
    with open(out, 'rb') as f:
        return {r['img_id']: r for r in pickle.load(f)}, log


def test_online_records_and_equal_results_over_batches_and_processes(video, checkpoint, tmp_path):
    ckpt, _ = checkpoint
    state = _load_checkpoint(ckpt, map_location='cpu')['state_dict']  # FOVEA's LKDE form: |1 + p| * init + 0.1
    scales = [float((1 + state[f'lzu_saliency.{k}']).abs() * init + 0.1)
              for k, init in (('bandwidth', 64.), ('amplitude', 1.))]
    reference, log = _test(video, ckpt, tmp_path, 'p1_b1')
    assert 'OnlineTestLoop: 2 sequences, 8 frames on process 0 of 1' in log
    images = {img['id']: img for img in video['images']}
    assert sorted(reference) == sorted(images)
    for image_id, result in reference.items():
        record, img = result['lzu_saliency'], images[image_id]
        if img['fid'] == 0:  # first frames: the fallback
            assert record['source'] == 'fallback' and record['reason'] == 'first frame of its sequence'
            torch.testing.assert_close(torch.from_numpy(record['saliency']), torch.full((31, 51), 1 / (31 * 51)))
            continue
        prev = next(i for i, m in images.items() if m['sid'] == img['sid'] and m['fid'] == img['fid'] - 1)
        assert record['source'] == 'previous_frame'
        assert (record['prev_img_id'], record['prev_fid']) == (prev, img['fid'] - 1)
        # exactly frame t-1's final detections (original pixels) ...
        before = reference[prev]['pred_instances']
        assert len(record['bboxes']) == 20
        np.testing.assert_array_equal(record['bboxes'], before['bboxes'].numpy())
        np.testing.assert_array_equal(record['scores'], before['scores'].numpy())
        # ... made the saliency of frame t (the source is the 1600x900 original: same pixels), with the learned scales
        expected = bbox_kde_saliency([before['bboxes'].double()], (900, 1600), (31, 51), *scales, dtype=torch.float64)
        assert result['lzu_zoom']['src_shape'] == (900, 1600)
        torch.testing.assert_close(torch.from_numpy(record['saliency']).double(), expected[0, 0], rtol=1e-6, atol=0)
    for name, procs, batch_size, interleave in (('p1_b2', 1, 2, 2), ('p2_b2', 2, 2, 2)):
        other, log = _test(video, ckpt, tmp_path, name, procs, batch_size=batch_size, interleave=interleave)
        if procs == 2:  # whole sequences per process
            assert 'OnlineTestLoop: 1 sequences, 4 frames on process 0 of 2' in log, log[-3000:]
        assert sorted(other) == sorted(reference)
        for image_id, result in reference.items():
            theirs = other[image_id]
            assert theirs['lzu_saliency']['source'] == result['lzu_saliency']['source']
            for key in ('bboxes', 'scores', 'labels'):
                a, b = result['pred_instances'][key].double(), theirs['pred_instances'][key].double()
                assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-5 * (1600 if key == 'bboxes' else 1), (
                    name, image_id, key, float((a - b).abs().max()))
