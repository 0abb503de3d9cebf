"""Acceptance: tools/train.py then tools/test.py on the real Cityscapes sample, uniform and LZU, 64x64 and 256x256.

Each run uses the Table 3 config unchanged except for what makes it an offline CPU smoke run (no pretrained
weights, 2 iterations, no dataloader workers): the official layout (symlinks to the real sample), the hold-out
split files, the boundary saliency computed by tools/saliency/boundary_saliency.py, validation on the mini-val
split with the best checkpoint kept, then tools/test.py on that saved checkpoint, evaluated on val at the crop's
full resolution with IoUMetric.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner

from tests.mmseg.conftest import config_path, load_tool

SMOKE_OPTIONS = [
    'model.pretrained=None', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
    'default_hooks.checkpoint.interval=1000', 'default_hooks.checkpoint.save_last=False',
    'default_hooks.checkpoint.save_optimizer=False', 'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False'
]


@pytest.mark.parametrize('size', [64, 256])
@pytest.mark.parametrize('variant', ['uniform', 'lzu'])
def test_train_then_test_real_sample(variant, size, cityscapes_layout, monkeypatch):
    name = (f'pspnet_r50-fpn_4xb2-80k_cityscapes-{size}x{size}.py' if variant == 'uniform' else
            f'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-{size}x{size}.py')
    monkeypatch.chdir(cityscapes_layout['workdir'])  # the configs' relative data/cityscapes/... paths
    work_dir = osp.join(cityscapes_layout['workdir'], 'work_dir')
    options = SMOKE_OPTIONS + [f'visualizer.name=vis_{variant}_{size}']
    torch.manual_seed(0)

    train = load_tool('tools/train.py')
    train.main([config_path(name), '--work-dir', work_dir, '--cfg-options', *options])
    best = glob.glob(osp.join(work_dir, 'best_mIoU_iter_*.pth'))
    assert len(best) == 1, 'validation on the mini-val split must keep the best checkpoint'

    test = load_tool('tools/test.py')
    cfg = test.build_cfg(test.parse_args([config_path(name), best[0], '--work-dir', work_dir, '--cfg-options',
                                          *[o for o in options if o.startswith(('model.', 'test_dataloader.'))],
                                          f'visualizer.name=vis_test_{variant}_{size}']))
    assert cfg.model.type == ('LZUEncoderDecoder' if variant == 'lzu' else 'EncoderDecoder')
    assert cfg.test_dataloader.dataset.data_prefix.img_path == 'leftImg8bit/val'
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc', 'averageScoreCategories'}  # IoUMetric + cityscapesscripts
    assert 0. <= metrics['mIoU'] <= 100. and 0. < metrics['aAcc'] <= 100.
    print(f'{name}: {metrics}')
    # the test really ran the trained weights of that checkpoint
    from mmengine.runner.checkpoint import _load_checkpoint  # torch.load(weights_only=True), mmengine's globals
    ckpt = _load_checkpoint(best[0], map_location='cpu')
    state = runner.model.state_dict()
    key = 'decode_head.conv_seg.weight'
    assert torch.equal(state[key], ckpt['state_dict'][key])


def test_labels_stay_unwarped_end_to_end(cityscapes_layout, monkeypatch):
    """Geometry end to end on the real sample: the LZU config's training labels are exactly the uniform config's
    (the zoom warps the image only), and those labels, fed back as logits through the LZU model's own
    post-processing to the crop's resolution, score the same mIoU with the config's IoU metric as through the
    uniform model (67.6: the 64x64 labels lose the small classes of the 128x128 crop); shifted by 2 pixels of the
    64x64 input they score less."""
    import copy

    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS, METRICS, MODELS

    monkeypatch.chdir(cityscapes_layout['workdir'])

    def samples(name, split):
        cfg = Config.fromfile(config_path(name))
        loader = copy.deepcopy(cfg[f'{split}_dataloader'])
        loader.dataset.pipeline = [t for t in loader.dataset.pipeline
                                   if t['type'] not in ('RandomFlip', 'PhotoMetricDistortion')]
        dataset = DATASETS.build(loader.dataset)
        return cfg, pseudo_collate([dataset[i] for i in range(len(dataset))])

    scores = {}
    for variant, name in (('uniform', 'pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py'),
                          ('lzu', 'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py')):
        cfg, train = samples(name, 'train')
        _, test = samples(name, 'test')
        labels = torch.stack([s.gt_sem_seg.data[0] for s in train['data_samples']])  # [B, 64, 64]
        scores[variant, 'images'] = torch.stack(train['inputs']).float()
        scores[variant, 'labels'] = labels
        model = MODELS.build(dict(cfg.model, pretrained=None)).eval()
        for shift in (0, 2):
            logits = torch.nn.functional.one_hot(labels.roll(shift, -1).clamp(max=18), 19).permute(0, 3, 1, 2)
            results = model.postprocess_result(logits.float() * 10, copy.deepcopy(test['data_samples']))
            metric = METRICS.build(dict(type='IoUMetric', iou_metrics=['mIoU']))
            metric.dataset_meta = dict(classes=tuple(range(19)), palette=[[0, 0, 0]] * 19)
            metric.process({}, [r.to_dict() for r in results])
            scores[variant, shift] = metric.evaluate(len(results))['mIoU']
    assert torch.equal(scores['uniform', 'labels'], scores['lzu', 'labels'])
    assert (scores['uniform', 'images'] - scores['lzu', 'images']).abs().mean() > 5  # the image is zoomed
    assert scores['lzu', 0] == scores['uniform', 0] > 50
    assert scores['lzu', 2] < scores['lzu', 0] - 5
