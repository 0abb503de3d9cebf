"""CenterCropCityscapesMetric: cityscapesscripts on the centred crop of the real Cityscapes sample."""
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
from mmseg.registry import METRICS

import lzu_mm.mmseg  # noqa: F401


def _evaluate(tmp_path, sample_paths, pred):
    metric = METRICS.build(dict(type='CenterCropCityscapesMetric', output_dir=str(tmp_path / 'out'),
                                keep_results=True))
    metric.dataset_meta = dict(classes=tuple(range(19)))
    sample = dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]), img_path=sample_paths['img'],
                  seg_map_path=sample_paths['seg'])
    metric.process({}, [sample])
    return metric.evaluate(1), metric


def test_ground_truth_crop_prediction_scores_near_one(sample_paths, tmp_path):
    label = mmcv.imread(sample_paths['seg'], flag='unchanged')
    crop = label[:, 64:192].astype(np.int64)
    pred = crop  # 255 (ignored in training) maps back to the unlabeled labelId
    results, metric = _evaluate(tmp_path / 'a', sample_paths, pred)
    # 1 - 1.6%: trainId-space labels lose the ignored classes of the category scores (e.g. parking in 'flat')
    assert results['averageScoreCategories'] > 0.98
    gt = osp.join(metric.output_dir, 'gt', 'frankfurt_000000_000294_gtFine_labelIds.png')
    assert mmcv.imread(gt, flag='unchanged').shape == (128, 128)
    inst = mmcv.imread(gt.replace('labelIds', 'instanceIds'), flag='unchanged')
    assert inst.dtype == np.uint16 and inst.shape == (128, 128)
    # the same prediction shifted by 16 pixels: the crop alignment matters
    shifted, _ = _evaluate(tmp_path / 'b', sample_paths, np.roll(pred, 16, axis=1))
    assert shifted['averageScoreCategories'] < 0.95


def test_prediction_not_a_crop_is_refused(sample_paths, tmp_path):
    with pytest.raises(ValueError, match=r'prediction 100x128 .* not a centred square crop'):
        _evaluate(tmp_path, sample_paths, np.zeros((100, 128), np.int64))


def test_classwise_iou_metric_reports_each_class_as_iou_metric_computes_it():
    """ClasswiseIoUMetric: IoUMetric's results plus IoU.<class> (%), equal to IoUMetric's per-class IoU."""
    from mmseg.evaluation import IoUMetric
    rng = np.random.default_rng(0)
    classes = ('road', 'car', 'sky')
    gt = rng.integers(0, 2, (20, 30))  # 'sky' never appears
    pred = np.where(rng.random((20, 30)) < 0.8, gt, 1 - gt)
    pred[0, :3] = 2  # ... but is predicted 3 times: IoU 0
    samples = [dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                    gt_sem_seg=dict(data=torch.from_numpy(gt)[None]))]
    ours, plain = METRICS.build(dict(type='ClasswiseIoUMetric')), IoUMetric()
    for metric in (ours, plain):
        metric.dataset_meta = dict(classes=classes)
        metric.process({}, samples)
    results, reference = ours.evaluate(1), plain.evaluate(1)
    assert {k: results[k] for k in reference} == reference
    for c, name in enumerate(classes):
        inter, union = ((pred == c) & (gt == c)).sum(), ((pred == c) | (gt == c)).sum()
        assert results[f'IoU.{name}'] == pytest.approx(100 * inter / union, abs=0.006)
    assert results['IoU.sky'] == 0.0
    assert np.nanmean([results[f'IoU.{n}'] for n in classes]) == pytest.approx(results['mIoU'], abs=0.01)
