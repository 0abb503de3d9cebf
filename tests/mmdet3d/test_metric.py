"""NuScenesSubsetMetric on the real nuScenes sample: ground truth as predictions scores perfectly."""
import copy

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')
pytest.importorskip('nuscenes')

from tests.mmdet3d.utils import nuscenes_mono3d_dataset  # noqa: E402

PREFIX = 'NuScenes metric/pred_instances_3d_NuScenes'  # BaseMetric prefix / NuScenesMetric key


def _gt_as_predictions(dataset, shift=(0., 0., 0.), evaluated_only=True):
    """One prediction per image: the image's own annotations (camera frame, 9-dim with velocity), score 1.

    With ``evaluated_only``, the objects that nuScenes does not evaluate (no LiDAR / radar point in the box, class
    outside the 10) are left out: predicting them is a false positive in nuScenes' protocol.
    """
    out = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        ann = info['ann_info']
        boxes = copy.deepcopy(ann['gt_bboxes_3d'])
        keep = torch.ones(len(boxes), dtype=torch.bool)
        if evaluated_only:
            keep = torch.from_numpy(_has_points(dataset, info, boxes.gravity_center.numpy()))
        boxes = boxes[keep]
        boxes.tensor[:, :3] += torch.tensor(shift, dtype=boxes.tensor.dtype)
        n = len(boxes)
        pred = dict(bboxes_3d=boxes, scores_3d=torch.ones(n),
                    labels_3d=torch.as_tensor(ann['gt_labels_3d'])[keep],
                    attr_labels=torch.as_tensor(ann['attr_labels']).reshape(-1)[keep])
        # as mmengine's Evaluator hands them to process(): Det3DDataSample.to_dict()
        out.append(dict(pred_instances_3d=pred, pred_instances=dict(), sample_idx=info['sample_idx']))
    return out


def _has_points(dataset, info, centres):
    """For camera-frame object centres: does the same sample-level instance have LiDAR / radar points?"""
    from mmengine import load
    sample = load(dataset.ann_file)['data_list'][info['sample_idx'] // 6]
    camera = next(iter(info['images']))
    cam2lidar = np.linalg.inv(np.asarray(sample['images'][camera]['lidar2cam']))
    lidar = centres @ cam2lidar[:3, :3].T + cam2lidar[:3, 3]
    instances = sample['instances']
    ref = np.array([inst['bbox_3d'][:3] for inst in instances])
    points = np.array([inst['num_lidar_pts'] + inst['num_radar_pts'] for inst in instances])
    nearest = np.linalg.norm(lidar[:, None] - ref[None], axis=-1).argmin(1)
    return points[nearest] > 0


def _metric(nuscenes_root, dataset, **kwargs):
    from mmdet3d.registry import METRICS
    metric = METRICS.build(dict(type='NuScenesSubsetMetric', data_root=nuscenes_root,
                                ann_file=f'{nuscenes_root}/nuscenes_infos_mini.pkl', **kwargs))
    metric.dataset_meta = dataset.metainfo
    return metric


def _evaluate(metric, predictions):
    metric.process({}, copy.deepcopy(predictions))
    return metric.evaluate(len(predictions))


def _present_classes(nuscenes_root):
    """Classes with at least one GT box that nuScenes evaluates (in range, with LiDAR/radar points)."""
    from mmengine import load
    from nuscenes.eval.detection.config import config_factory
    cfg = config_factory('detection_cvpr_2019')
    info = load(f'{nuscenes_root}/nuscenes_infos_mini.pkl')
    classes = list(info['metainfo']['categories'])
    info = info['data_list'][0]
    lidar2global = np.asarray(info['ego2global']) @ np.asarray(info['lidar_points']['lidar2ego'])
    present = set()
    for inst in info['instances']:
        if inst['bbox_label_3d'] < 0 or inst['num_lidar_pts'] + inst['num_radar_pts'] == 0:
            continue
        centre = lidar2global[:3, :3] @ np.asarray(inst['bbox_3d'][:3]) + lidar2global[:3, 3]
        name = classes[inst['bbox_label_3d']]
        if np.linalg.norm(centre[:2] - np.asarray(info['ego2global'])[:2, 3]) < cfg.class_range[name]:
            present.add(name)
    return present


def test_ground_truth_as_predictions_scores_perfectly(nuscenes_root):
    dataset = nuscenes_mono3d_dataset(nuscenes_root, [])
    present = _present_classes(nuscenes_root)
    assert {'car', 'pedestrian', 'barrier'} <= present
    predictions = _gt_as_predictions(dataset)
    # the cross-camera NMS at IoU 0.5 removes the duplicates of objects seen by two cameras, keeps neighbours;
    # ego-motion compensation puts the camera boxes where the LiDAR-frame annotations are (zero translation error)
    results = _evaluate(_metric(nuscenes_root, dataset, cross_camera_nms=dict(nms_thr=0.5),
                                ego_motion_compensation=True), predictions)
    for name in present:
        for dist in ('0.5', '1.0', '2.0', '4.0'):
            assert results[f'{PREFIX}/{name}_AP_dist_{dist}'] == pytest.approx(1.0), (name, dist)
        assert results[f'{PREFIX}/{name}_trans_err'] <= 1e-3, name  # metres
        assert results[f'{PREFIX}/{name}_scale_err'] <= 1e-3, name  # 1 - IoU
        if name != 'traffic_cone':  # devkit: no orientation for cones
            assert results[f'{PREFIX}/{name}_orient_err'] <= 1e-3, name  # radians
    for name in set(dataset.metainfo['classes']) - present:
        assert results[f'{PREFIX}/{name}_AP_dist_2.0'] == 0.  # devkit averages over all 10 classes
    n = len(dataset.metainfo['classes'])
    assert results[f'{PREFIX}/mAP'] == pytest.approx(len(present) / n)
    for key in ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE', 'NDS'):
        assert f'{PREFIX}/{key}' in results
    assert 0 < results[f'{PREFIX}/NDS'] < 1

    # NuScenesMetric's own cross-camera NMS (BEV IoU 0.05) also merges two pedestrians standing side by side
    stock = _evaluate(_metric(nuscenes_root, dataset, ego_motion_compensation=True), predictions)
    assert stock[f'{PREFIX}/pedestrian_AP_dist_2.0'] < 1
    for name in present - {'pedestrian'}:
        assert stock[f'{PREFIX}/{name}_AP_dist_2.0'] == pytest.approx(1.0), name


def test_shifted_predictions_are_penalised(nuscenes_root):
    """A 1 m lateral shift: translation error ~1 m, AP drops at the 0.5 m threshold (the metric can fail)."""
    dataset = nuscenes_mono3d_dataset(nuscenes_root, [])
    results = _evaluate(_metric(nuscenes_root, dataset, ego_motion_compensation=True),
                        _gt_as_predictions(dataset, shift=(1., 0., 0.)))
    assert results[f'{PREFIX}/car_trans_err'] == pytest.approx(1.0, abs=0.05)
    assert results[f'{PREFIX}/car_AP_dist_0.5'] == 0.
    assert results[f'{PREFIX}/car_AP_dist_2.0'] == pytest.approx(1.0)


def test_by_default_boxes_move_with_the_ego_vehicle_as_in_nuscenes_metric(nuscenes_root):
    """Default: NuScenesMetric's camera->global transform (cam2ego + keyframe pose), as the published numbers use.

    It shifts boxes by the ego motion between the camera and LiDAR timestamps, so perfect predictions get a
    non-zero translation error; the info passed to ``cam_nusc_box_to_global`` is NuScenesMetric's, unchanged.
    """
    dataset = nuscenes_mono3d_dataset(nuscenes_root, [])
    metric = _metric(nuscenes_root, dataset)
    assert metric.ego_motion_compensation is False
    info = {'images': {'CAM_FRONT': {'cam2ego': np.eye(4)}}}
    assert metric._camera_info(info, 'CAM_FRONT') is info
    results = _evaluate(metric, _gt_as_predictions(dataset))
    assert results[f'{PREFIX}/car_trans_err'] > 0.02


def test_subset_of_cameras_and_bad_input(nuscenes_root):
    dataset = nuscenes_mono3d_dataset(nuscenes_root, [])
    predictions = _gt_as_predictions(dataset)
    full = _evaluate(_metric(nuscenes_root, dataset), predictions)
    front = _evaluate(_metric(nuscenes_root, dataset), predictions[:1])  # CAM_FRONT only
    assert 0 < front[f'{PREFIX}/mAP'] < full[f'{PREFIX}/mAP']  # objects of the other cameras are missed
    bad = copy.deepcopy(predictions[:1])
    bad[0]['sample_idx'] = 6 * 7
    with pytest.raises(ValueError, match='no sample with sample_idx 7'):
        _evaluate(_metric(nuscenes_root, dataset), bad)
    with pytest.raises(ValueError, match="metric='bbox' only"):
        _metric(nuscenes_root, dataset, metric='segm')
