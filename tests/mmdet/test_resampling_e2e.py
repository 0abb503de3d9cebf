"""End to end through tools/train.py and tools/test.py on the real sample data: learned resampling and FOVEA.

* A segmentor (the learned-saliency PSPNet config with DownsizeNet added) trains two iterations on the real
  Cityscapes sample: every step's gradients reaching the saliency network and DownsizeNet are finite, the first step
  moves the parameters that start at zero (DownsizeNet's 1x1 convolution, the saliency head) and the second every
  one of them.
* The DownsizeNet it saved initialises a detector's (poster Table 3's transfer: segmentation -> detection, through
  ``init_cfg=dict(type='Pretrained', ...)``), which trains with a learned saliency on the Argoverse-HD-format set made
  from the real nuScenes images; a DownsizeNet of another depth fails at load, naming the key.
* FOVEA RetinaNet trains, saves, and tests to COCO metrics with boxes in original-image coordinates.

ResNet-18, one head convolution and small inputs keep the runs short (the mechanisms depend on neither).
"""
import json
import os.path as osp
import pickle
import re
import sys

import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import lzu_mm.mmdet  # noqa: F401  (also lets mmengine's loaders read mmengine checkpoints)
from tests.conftest import REPO_ROOT, shared_path

from .conftest import CONFIG_DIR
from .test_train_test_e2e import cfg_options, kde_saliency, run  # noqa: F401  (kde_saliency: a fixture)

pytestmark = pytest.mark.xdist_group('resampling_e2e')  # one worker: the detector reuses the segmentor's checkpoint

SEG_CONFIG = osp.join(REPO_ROOT, 'configs', 'lzu_pspnet', 'pspnet_r50-fpn_lzu-learned_4xb2-80k_cityscapes-256x256.py')
SMALL_DET = ['model.backbone.depth=18', 'model.neck.in_channels=[64,128,256,512]', 'model.bbox_head.stacked_convs=1']


def probe_config(path, base, imports, out_file, extra=''):
    """A config inheriting ``base`` with the test's parameter probe added (as a user adds a hook)."""
    with open(path, 'w') as f:
        f.write(
            f'_base_ = [{base!r}]\n'
            f"custom_imports = dict(imports={list(imports) + ['tests.param_probe']!r}, allow_failed_imports=False)\n"
            f"custom_hooks = [dict(type='LearnedParamProbe', out_file={out_file!r})]\n{extra}")
    return str(path)


def probe(out_file):
    with open(out_file) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def segmentor_run(tmp_path_factory):
    from tests.mmseg.conftest import build_cityscapes_layout
    layout = build_cityscapes_layout(osp.abspath(shared_path('cityscapes')), str(tmp_path_factory.mktemp('cityscapes')))
    work = osp.join(layout['workdir'], 'work')
    out = osp.join(layout['workdir'], 'probe.json')
    cfg = probe_config(osp.join(layout['workdir'], 'seg.py'), SEG_CONFIG, ['lzu_mm.mmseg'], out, (
        "model = dict(lzu=dict(saliency_net=dict(input_size=(64, 64)), interpolation=dict(type='DownsizeNet')))\n"))
    options = [
        'model.pretrained=None', 'model.backbone.depth=18', 'model.neck.in_channels=[64,128,256,512]',
        'model.data_preprocessor.size=(64,64)', 'train_dataloader.dataset.pipeline.4.scale=(64,64)',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=1000', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.save_best=None',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        f"train_dataloader.dataset.data_root={layout['root']}/", f"val_dataloader.dataset.data_root={layout['root']}/"
    ]
    log = run([sys.executable, 'tools/train.py', cfg, '--work-dir', work, '--cfg-options', *options])
    return dict(log=log, checkpoint=osp.join(work, 'iter_2.pth'), probe=out)


def test_segmentor_training_steps_move_the_learned_pieces(segmentor_run):
    assert re.search(r'Iter\(train\)\s+\[2/2\].*loss: [0-9.]+', segmentor_run['log']), segmentor_run['log'][-3000:]
    first, second = probe(segmentor_run['probe'])
    names = set(first)
    assert any(n.startswith('lzu_interpolation.') for n in names) and any(n.startswith('lzu_saliency_net.')
                                                                          for n in names)
    for step in (first, second):
        assert all(r['grad'] is None or r['grad']['finite'] for r in step.values())
    # step 1: the zero-initialised outputs (bilinear start, uniform start) get non-zero gradients and move
    for name in ('lzu_interpolation.coefficients.weight', 'lzu_saliency_net.head.weight'):
        assert first[name]['changed'] and first[name]['grad']['abs_sum'] > 0, name
    # step 2: every parameter of both networks has a finite non-zero gradient and moves
    assert all(r['changed'] and r['grad']['abs_sum'] > 0 for r in second.values()), \
        {n: r for n, r in second.items() if not r['changed']}


def test_detector_reuses_the_segmentors_downsizenet_and_learns_its_saliency(segmentor_run, argoverse_hd, tmp_path):
    ckpt = segmentor_run['checkpoint']
    trained = {k[len('lzu_interpolation.'):]: v for k, v in
               _load_checkpoint(ckpt, map_location='cpu')['state_dict'].items()
               if k.startswith('lzu_interpolation.')}
    out = str(tmp_path / 'probe.json')
    transfer = (f"model = dict(lzu=dict(saliency_net=dict(input_size=(62, 102)), interpolation=dict(type='DownsizeNet',"
                f" init_cfg=dict(type='Pretrained', checkpoint={ckpt!r}, prefix='lzu_interpolation.'))))\n")
    base = osp.join(CONFIG_DIR, 'retinanet_r50_fpn_lzu-learned_3e_argoverse-hd-0.5x.py')
    cfg = probe_config(tmp_path / 'det.py', base, ['lzu_mm.mmdet'], out, transfer)
    # no warm-up (its lr 1e-5 rounds most first steps away in float32): SGD at the configs' lr 0.01
    opts = cfg_options(argoverse_hd) + SMALL_DET + ['train_dataloader.dataset.indices=4',
                                                    'param_scheduler.0.start_factor=1.0']
    log = run([sys.executable, 'tools/train.py', cfg, '--work-dir', str(tmp_path / 'work'), '--cfg-options', *opts])
    assert re.search(r'Epoch\(train\)\s+\[1\]\[2/2\].*loss: [0-9.]+', log), log[-3000:]
    start = _load_checkpoint(out + '.init.pth', map_location='cpu')
    assert trained and all(torch.equal(start['lzu_interpolation.' + k], v) for k, v in trained.items())
    first, second = probe(out)
    for step in (first, second):
        for name, record in step.items():
            assert record['grad'] is not None and record['grad']['finite'], name
    # the transferred DownsizeNet's 1x1 convolution is no longer zero: its whole texture CNN learns at once; the
    # saliency head starts at zero (the identity warp) and moves first, the rest of the network from step 2 on
    assert all(r['grad']['abs_sum'] > 0 for n, r in first.items() if n.startswith('lzu_interpolation.'))
    assert first['lzu_saliency_net.head.weight']['changed']
    assert all(r['changed'] and r['grad']['abs_sum'] > 0 for r in second.values()), second
    # a DownsizeNet of another depth cannot take these weights: refused at load, naming the key
    from mmengine.config import Config

    from mmdet.registry import MODELS
    model_cfg = Config.fromfile(cfg).model
    model_cfg.lzu.interpolation.num_convs = 3
    model_cfg.backbone.init_cfg = None
    model = MODELS.build(model_cfg)
    with pytest.raises(ValueError, match=r'lzu_interpolation\.texture\.4\.weight is missing from the checkpoint'):
        model.init_weights()


def test_fovea_train_save_test_coco_metrics(argoverse_hd, kde_saliency, tmp_path):  # noqa: F811
    cfg = osp.join(CONFIG_DIR, 'retinanet_r50_fpn_fovea-fixed_3e_argoverse-hd-0.5x.py')
    opts = cfg_options(argoverse_hd, kde_saliency) + SMALL_DET
    work = str(tmp_path / 'work')
    log = run([sys.executable, 'tools/train.py', cfg, '--work-dir', work, '--cfg-options', *opts])
    assert re.search(r'Epoch\(train\)\s+\[1\]\[\d+/\d+\].*loss: [0-9.]+', log), log[-3000:]
    assert 'FOVEARetinaNet' in open(osp.join(work, osp.basename(cfg))).read()
    preds = str(tmp_path / 'preds.pkl')
    out = run([sys.executable, 'tools/test.py', cfg, osp.join(work, 'epoch_1.pth'), '--work-dir',
               str(tmp_path / 'test'), '--out', preds, '--cfg-options', *opts])
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l'):
        assert re.search(rf'coco/{key}: [0-9.-]+', out), out[-3000:]
    with open(preds, 'rb') as f:
        results = pickle.load(f)
    boxes = torch.cat([r['pred_instances']['bboxes'] for r in results])
    assert len(results) == argoverse_hd['num_images'] and float(boxes[:, 2].max()) > 192
    assert float(boxes[:, 2].max()) <= 1600 + 1e-3 and float(boxes[:, 3].max()) <= 900 + 1e-3
