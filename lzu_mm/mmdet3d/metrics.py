"""nuScenes detection metrics for monocular 3D predictions on any subset (LZU Table 5 / Table 2).

MMDetection3D's ``NuScenesMetric`` hands the predictions to nuscenes-devkit's
``NuScenesEval``, which loads the ground truth from the full nuScenes
database (the ``v1.0-*`` json tables) and evaluates a predefined split.
:class:`NuScenesSubsetMetric` scores the predictions against the annotations
in the MMDetection3D info file instead, for exactly the samples that were
predicted, with nuscenes-devkit's own detection evaluation: its
``DetectionBox`` / ``EvalBoxes``, ``DetectionConfig`` (``detection_cvpr_2019``
by default), ``add_center_dist`` and ``filter_eval_boxes``, and
``DetectionEval.evaluate`` (``accumulate``, ``calc_ap``, ``calc_tp``,
``DetectionMetrics``) -- nothing of the evaluation is re-implemented.

Ground truth, per sample (= one nuScenes keyframe, all 6 cameras): the info
file's sample-level ``instances`` (LiDAR frame, gravity centre, ``l, w, h,
yaw``; ``velocity`` in the LiDAR frame), mapped to the global frame with
``lidar2ego`` and ``ego2global``, with ``num_pts = num_lidar_pts +
num_radar_pts``; instances with ``bbox_label_3d == -1`` (classes outside the
10 detection classes) are dropped, like devkit's ``category_to_detection_name``.

Predictions: as ``NuScenesMetric`` formats camera boxes -- each image's boxes
to the global frame, the boxes of the 6 cameras of a sample merged with the
same BEV NMS (``box3d_multiclass_nms``, ``nms_thr=0.05``, at most 500 per
sample), attributes from ``get_attr_name``.

Comparability with published numbers. By default the predictions are
formatted exactly as ``NuScenesMetric`` formats them (same camera-to-global
transform, cross-camera NMS, attribute names) and devkit's ``DetectionEval``
scores them, so the remaining differences are all on the ground-truth side
and in which samples count. Where the numbers are **not** comparable with
``NuScenesMetric`` + ``NuScenesEval`` (hence with the paper's Tables 2 and 5):

* **Subset** (always): only the samples (keyframes) with at least one
  predicted image are evaluated, and for them all annotations count; a
  sample with fewer than 6 predicted cameras is evaluated anyway (with a
  warning), its objects in the missing cameras then count as missed. On a
  full official split (every camera of every sample predicted) the sample
  set is the same as devkit's.
* **Bike racks** (bicycle / motorcycle AP and TP errors): devkit drops
  bicycle / motorcycle boxes, GT and predicted, inside
  ``static_object.bicycle_rack`` annotations; the info file has none, so
  none are dropped here. Scenes with bike racks give a different
  ``bicycle`` / ``motorcycle`` AP (so mAP and NDS); the other 8 classes are
  unaffected.
* **GT attributes** (mAAE): the info file's ``instances`` carry no
  attribute; each gets the ``attr_label`` of the camera instance
  (``cam_instances``) of the same object (same class, centre within
  ``attr_match_dist`` metres in the LiDAR frame). Objects seen by no camera
  get ``''`` (no attribute: devkit ignores them in mAAE, where the database
  would give one). Equal to the database's attribute when the object is
  visible and the match is unique.
* **GT velocity** (mAVE): the info file's LiDAR-frame ``(vx, vy)`` rotated
  back to the global frame (the converter dropped ``vz``); differences are
  of the order of the ego vehicle's tilt, below devkit's rounding in
  practice but not bit-identical.
* **Camera to global**, only with ``ego_motion_compensation=True`` (off by
  default, as in ``NuScenesMetric``): a camera image is taken up to ~40 ms
  before / after the LiDAR keyframe. ``NuScenesMetric`` maps camera boxes to
  the global frame with the calibrated ``cam2ego`` and the *LiDAR*
  keyframe's ``ego2global``, which shifts every box by the ego motion
  between the two timestamps (about 0.1-0.5 m while driving; the published
  numbers include that shift). ``True`` uses ``ego2global @ lidar2ego @
  inv(lidar2cam)`` instead (``lidar2cam`` includes the ego motion), so a
  perfect detector gets zero translation error -- a diagnostic, whose mATE
  (and AP at the 0.5 m threshold) is not comparable with published ones.
* Runs on CPU (``NuScenesMetric``'s cross-camera NMS calls ``.cuda()``): no
  effect on the numbers.

Not checked against ``NuScenesEval`` numerically here: the sample data has
no nuScenes database tables, which ``NuScenesMetric`` needs. For numbers to
publish, evaluate the full split with ``NuScenesMetric``.

Shared with ``NuScenesMetric`` (not a difference, but worth knowing): its
cross-camera BEV NMS at IoU 0.05 also merges distinct objects whose BEV boxes
touch (two pedestrians side by side), so even perfect predictions lose a
little pedestrian AP; ``cross_camera_nms=dict(nms_thr=0.5)`` keeps them and
still removes the duplicates of objects seen by two cameras. Predictions of
objects without LiDAR / radar points are false positives (devkit drops such
ground truth).

Metric keys are those of ``NuScenesMetric``:
``pred_instances_3d_NuScenes/{mAP, mATE, mASE, mAOE, mAVE, mAAE, NDS}`` and
per class ``{class}_AP_dist_{d}`` and ``{class}_{trans,scale,orient,vel,attr}_err``.
"""
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine import Config, load
from mmengine.logging import MMLogger, print_log
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes
from nuscenes.eval.detection.data_classes import DetectionBox, DetectionConfig
from nuscenes.eval.detection.evaluate import DetectionEval

from mmdet3d.evaluation.metrics.nuscenes_metric import (NuScenesMetric, cam_nusc_box_to_global,
                                                        global_nusc_box_to_cam, lidar_nusc_box_to_global,
                                                        output_to_nusc_box)
from mmdet3d.models.layers import box3d_multiclass_nms
from mmdet3d.registry import METRICS
from mmdet3d.structures import CameraInstance3DBoxes, LiDARInstance3DBoxes, bbox3d2result, xywhr2xyxyr

#: ``attr_label`` -> attribute name, MMDetection3D's nuScenes order (index 8: no attribute).
ATTRIBUTE_NAMES = ('cycle.with_rider', 'cycle.without_rider', 'pedestrian.moving', 'pedestrian.standing',
                   'pedestrian.sitting_lying_down', 'vehicle.moving', 'vehicle.parked', 'vehicle.stopped', '')

#: Cross-camera NMS of ``NuScenesMetric._format_camera_bbox`` (MMDetection3D 1.4).
CROSS_CAMERA_NMS = dict(use_rotate_nms=True, nms_across_levels=False, nms_pre=4096, nms_thr=0.05, score_thr=0.01,
                        min_bbox_size=0, max_per_frame=500)

CAMERA_TYPES = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')


class _NoRange:
    """An eval config stand-in whose class ranges are infinite (no range filter while moving GT boxes)."""
    class_range = defaultdict(lambda: float('inf'))


class InfoFileIndex:
    """The nuScenes table lookups that devkit's ``add_center_dist`` / ``filter_eval_boxes`` read, from an info file.

    ``get('sample', token)`` -> ``{'anns': [], 'data': {'LIDAR_TOP': token}}``
    (no bike-rack annotations), ``get('sample_data', token)`` ->
    ``{'ego_pose_token': token}``, ``get('ego_pose', token)`` ->
    ``{'translation': ego2global[:3, 3]}`` (the LiDAR keyframe's ego pose,
    metres, global frame).
    """

    def __init__(self, infos: Sequence[dict]):
        self._ego = {info['token']: np.asarray(info['ego2global'], dtype=np.float64)[:3, 3].tolist() for info in infos}

    def get(self, table: str, token: str) -> dict:
        if table == 'sample':
            return {'anns': [], 'data': {'LIDAR_TOP': token}}
        if table == 'sample_data':
            return {'ego_pose_token': token}
        if table == 'ego_pose':
            return {'translation': self._ego[token]}
        raise KeyError(f'InfoFileIndex has no table {table!r} (only sample, sample_data, ego_pose)')


class InfoFileDetectionEval(DetectionEval):
    """nuscenes-devkit's ``DetectionEval`` on boxes given directly (no database, no result file).

    ``evaluate()`` is devkit's, unchanged; the constructor stands in for the
    database / json loading of ``DetectionEval.__init__``.

    Args:
        config: devkit ``DetectionConfig``.
        gt_boxes, pred_boxes: ``EvalBoxes`` of ``DetectionBox`` (global
            frame), over the same sample tokens, already centre-distanced and
            filtered.
    """

    def __init__(self, config: DetectionConfig, gt_boxes: EvalBoxes, pred_boxes: EvalBoxes, verbose: bool = False):
        if set(gt_boxes.sample_tokens) != set(pred_boxes.sample_tokens):
            raise ValueError('gt_boxes and pred_boxes must cover the same sample tokens')
        self.cfg = config
        self.gt_boxes = gt_boxes
        self.pred_boxes = pred_boxes
        self.sample_tokens = gt_boxes.sample_tokens
        self.verbose = verbose


def _filter_eval_boxes(index: InfoFileIndex, boxes: EvalBoxes, class_range: dict) -> EvalBoxes:
    """devkit's ``filter_eval_boxes``, which cannot tell the box type of a set without any box (nothing to filter)."""
    if not any(len(b) for b in boxes.boxes.values()):
        return boxes
    return filter_eval_boxes(index, boxes, class_range)


def _detection_box(token: str, box, name: str, attribute: str, num_pts: int = -1) -> DetectionBox:
    return DetectionBox(sample_token=token, translation=box.center.tolist(), size=box.wlh.tolist(),
                        rotation=box.orientation.elements.tolist(), velocity=box.velocity[:2].tolist(),
                        num_pts=int(num_pts), detection_name=name,
                        detection_score=float(box.score) if np.isfinite(box.score) else -1.0,
                        attribute_name=attribute)


def _nusc_boxes_to_cam_box3d(boxes: list, num_classes: int) -> Tuple[CameraInstance3DBoxes, torch.Tensor, torch.Tensor]:
    """``nusc_box_to_cam_box3d`` of MMDetection3D, on the CPU (the original calls ``.cuda()``)."""
    locs = torch.tensor(np.array([b.center for b in boxes]), dtype=torch.float32).view(-1, 3)
    dims = torch.tensor(np.array([b.wlh for b in boxes]), dtype=torch.float32).view(-1, 3)
    rots = torch.tensor([b.orientation.yaw_pitch_roll[0] for b in boxes], dtype=torch.float32).view(-1, 1)
    velocity = torch.tensor(np.array([b.velocity[0::2] for b in boxes]), dtype=torch.float32).view(-1, 2)
    dims = dims[:, [1, 2, 0]]  # nuScenes w, l, h -> camera l, h, w
    cam_boxes3d = CameraInstance3DBoxes(torch.cat([locs, dims, -rots, velocity], dim=1), box_dim=9,
                                        origin=(0.5, 0.5, 0.5))
    scores = torch.tensor([float(b.score) for b in boxes], dtype=torch.float32)
    labels = torch.tensor([int(b.label) for b in boxes], dtype=torch.long)
    nms_scores = scores.new_zeros(len(boxes), num_classes + 1)
    nms_scores[torch.arange(len(boxes)), labels] = scores
    return cam_boxes3d, nms_scores, labels


@METRICS.register_module()
class NuScenesSubsetMetric(NuScenesMetric):
    """nuScenes detection score of monocular 3D predictions against the info file's annotations.

    See the module docstring for the ground truth, the formatting and the
    known differences from ``NuScenesMetric``. Takes ``NuScenesMetric``'s
    arguments, so ``val_evaluator.type`` can be switched in a config;
    ``ann_file`` is the MMDetection3D info file of the evaluated data (its
    ``data_list`` and ``sample_idx`` / ``token`` / ``ego2global`` /
    ``lidar_points.lidar2ego`` / ``images.*.{cam2ego, lidar2cam}`` /
    ``instances`` / ``cam_instances``).

    Args:
        ego_motion_compensation: map camera boxes to the global frame through
            ``lidar2cam`` (exact at the camera's timestamp) instead of the
            calibrated ``cam2ego`` with the LiDAR keyframe's pose. Default
            False: ``NuScenesMetric``'s transform, as in published numbers;
            True is a diagnostic whose mATE is not comparable with them.
        attr_match_dist: metres; a GT instance takes the attribute of the
            camera instance of its class whose centre is nearest, if closer.
        cross_camera_nms: overrides of the BEV NMS that merges the boxes of
            the 6 cameras of a sample (default ``CROSS_CAMERA_NMS``, that of
            ``NuScenesMetric``: ``nms_thr=0.05`` also merges *distinct*
            objects whose BEV boxes overlap slightly, e.g. two pedestrians
            side by side; ``dict(nms_thr=0.5)`` still removes the duplicates
            of an object seen by two cameras but keeps such neighbours).
        metric: only ``'bbox'``.
        **kwargs: ``NuScenesMetric`` arguments (``data_root``, ``ann_file``,
            ``eval_version``, ``prefix``, ``collect_device``, ...).

    Raises:
        ValueError: an unsupported ``metric``; predictions that are not
            camera boxes; a predicted ``sample_idx`` that is not in the info
            file; more than ``max_boxes_per_sample`` boxes in a sample.
    """

    def __init__(self,
                 *args,
                 ego_motion_compensation: bool = False,
                 attr_match_dist: float = 0.5,
                 cross_camera_nms: Optional[dict] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if self.metrics != ['bbox']:
            raise ValueError(f"NuScenesSubsetMetric supports metric='bbox' only, got {self.metrics}")
        if self.format_only:
            raise ValueError('NuScenesSubsetMetric evaluates; use NuScenesMetric with format_only=True to write a '
                             'submission')
        self.ego_motion_compensation = bool(ego_motion_compensation)
        self.attr_match_dist = float(attr_match_dist)
        unknown = set(cross_camera_nms or {}) - set(CROSS_CAMERA_NMS)
        if unknown:
            raise ValueError(f'cross_camera_nms has unknown keys {sorted(unknown)}; expected a subset of '
                             f'{sorted(CROSS_CAMERA_NMS)}')
        self.cross_camera_nms = dict(CROSS_CAMERA_NMS, **(cross_camera_nms or {}))

    # ------------------------------------------------------------ ground truth
    @staticmethod
    def _camera_to_lidar(info: dict, camera: str) -> np.ndarray:
        return np.linalg.inv(np.asarray(info['images'][camera]['lidar2cam'], dtype=np.float64))

    def _gt_attributes(self, info: dict, centres: np.ndarray, labels: np.ndarray) -> List[str]:
        """Attribute name of each sample-level instance, from the camera instance of the same object."""
        cam_centres, cam_labels, cam_attrs = [], [], []
        for camera, instances in info.get('cam_instances', {}).items():
            if not instances:
                continue
            cam2lidar = self._camera_to_lidar(info, camera)
            boxes = np.array([inst['bbox_3d'][:3] for inst in instances], dtype=np.float64)  # camera frame
            cam_centres.append(boxes @ cam2lidar[:3, :3].T + cam2lidar[:3, 3])
            cam_labels += [inst['bbox_label_3d'] for inst in instances]
            cam_attrs += [inst.get('attr_label', len(ATTRIBUTE_NAMES) - 1) for inst in instances]
        names = [''] * len(centres)
        if not cam_centres or not len(centres):
            return names
        cam_centres = np.concatenate(cam_centres)
        cam_labels = np.asarray(cam_labels)
        dist = np.linalg.norm(centres[:, None, :] - cam_centres[None], axis=-1)
        dist[labels[:, None] != cam_labels[None]] = np.inf
        nearest = dist.argmin(1)
        for k, j in enumerate(nearest):
            if dist[k, j] <= self.attr_match_dist:
                names[k] = ATTRIBUTE_NAMES[int(cam_attrs[j])]
        return names

    def _gt_boxes(self, info: dict, classes: Sequence[str]) -> List[DetectionBox]:
        instances = [inst for inst in info.get('instances', []) if inst['bbox_label_3d'] >= 0]
        if not instances:
            return []
        boxes = np.array([inst['bbox_3d'] for inst in instances], dtype=np.float32)
        velocity = np.array([inst.get('velocity', [np.nan, np.nan]) for inst in instances], dtype=np.float32)
        labels = np.array([inst['bbox_label_3d'] for inst in instances], dtype=np.int64)
        attributes = self._gt_attributes(info, boxes[:, :3].astype(np.float64), labels)
        lidar_boxes = LiDARInstance3DBoxes(np.concatenate([boxes, velocity], 1), box_dim=9, origin=(0.5, 0.5, 0.5))
        nusc_boxes, _ = output_to_nusc_box(
            dict(bboxes_3d=lidar_boxes, scores_3d=torch.full((len(instances), ), float('nan')),
                 labels_3d=torch.from_numpy(labels)))
        nusc_boxes = lidar_nusc_box_to_global(info, nusc_boxes, classes, _NoRange())  # range filter: devkit's
        return [
            _detection_box(info['token'], box, classes[int(label)], attr,
                           num_pts=inst.get('num_lidar_pts', 0) + inst.get('num_radar_pts', 0))
            for box, label, attr, inst in zip(nusc_boxes, labels, attributes, instances)
        ]

    # ------------------------------------------------------------- predictions
    def _camera_info(self, info: dict, camera: str) -> dict:
        """``info`` whose ``cam2ego`` for ``camera`` is the one used to map that camera's boxes to ego."""
        if not self.ego_motion_compensation:
            return info
        lidar2ego = np.asarray(info['lidar_points']['lidar2ego'], dtype=np.float64)
        out = dict(info, images=dict(info['images']))
        out['images'][camera] = dict(info['images'][camera], cam2ego=lidar2ego @ self._camera_to_lidar(info, camera))
        return out

    def _pred_boxes(self, info: dict, per_camera: List[Tuple[str, dict]], classes: Sequence[str]) -> list:
        boxes, attrs = [], []
        for camera, det in per_camera:
            if not isinstance(det['bboxes_3d'], CameraInstance3DBoxes):
                raise ValueError('NuScenesSubsetMetric scores monocular (camera-frame) predictions, got '
                                 f"{type(det['bboxes_3d']).__name__}")
            if len(det['bboxes_3d']) == 0:
                continue
            det = dict(det)
            if 'attr_labels' not in det:  # detectors without an attribute branch: default attributes
                det['attr_labels'] = torch.full((len(det['bboxes_3d']), ), len(ATTRIBUTE_NAMES) - 1)
            cam_boxes, cam_attrs = output_to_nusc_box(det)
            cam_boxes, cam_attrs = cam_nusc_box_to_global(self._camera_info(info, camera), cam_boxes, cam_attrs,
                                                          classes, self.eval_detection_configs, camera)
            boxes += cam_boxes
            attrs += list(cam_attrs)
        if not boxes:
            return []
        # NuScenesMetric._format_camera_bbox: BEV NMS over the cameras of a sample (in CAM_FRONT's frame)
        boxes = global_nusc_box_to_cam(info, boxes, classes, self.eval_detection_configs)
        if not boxes:
            return []
        cam_boxes3d, scores, labels = _nusc_boxes_to_cam_box3d(boxes, len(classes))
        nms_cfg = Config(self.cross_camera_nms)
        boxes3d, scores, labels, attrs = box3d_multiclass_nms(
            cam_boxes3d.tensor, xywhr2xyxyr(cam_boxes3d.bev), scores, nms_cfg.score_thr, nms_cfg.max_per_frame,
            nms_cfg, mlvl_attr_scores=labels.new_tensor([int(a) for a in attrs]))
        det = bbox3d2result(CameraInstance3DBoxes(boxes3d, box_dim=9), scores, labels, attrs)
        boxes, attrs = output_to_nusc_box(det)
        boxes, attrs = cam_nusc_box_to_global(info, boxes, attrs, classes, self.eval_detection_configs)
        return [
            _detection_box(info['token'], box, classes[box.label], self.get_attr_name(int(attr), classes[box.label]))
            for box, attr in zip(boxes, attrs)
        ]

    # ------------------------------------------------------------------ metric
    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Score the collected predictions (see the class docstring); returns ``NuScenesMetric``'s keys."""
        logger: MMLogger = MMLogger.get_current_instance()
        classes = list(self.dataset_meta['classes'])
        infos = load(self.ann_file, backend_args=self.backend_args)['data_list']
        by_idx = {int(info['sample_idx']): info for info in infos}

        frames: 'OrderedDict[int, List[Tuple[str, dict]]]' = OrderedDict()
        for result in results:
            idx = int(result['sample_idx'])
            frame, cam_id = divmod(idx, len(CAMERA_TYPES))  # Det3DDataset mv_image_based: sample_idx * 6 + camera
            if frame not in by_idx:
                raise ValueError(f'prediction for sample_idx {idx} (frame {frame}) but the info file {self.ann_file} '
                                 f'has no sample with sample_idx {frame}')
            camera = list(by_idx[frame]['images'])[cam_id]
            frames.setdefault(frame, []).append((camera, result['pred_instances_3d']))

        gt, pred = EvalBoxes(), EvalBoxes()
        for frame, per_camera in frames.items():
            info = by_idx[frame]
            if len(per_camera) != len(info['images']):
                print_log(f'NuScenesSubsetMetric: sample {info["token"]} has {len(per_camera)} of '
                          f'{len(info["images"])} cameras predicted; objects in the others count as missed',
                          logger=logger, level=30)
            boxes = self._pred_boxes(info, per_camera, classes)
            if len(boxes) > self.eval_detection_configs.max_boxes_per_sample:
                raise ValueError(f'sample {info["token"]} has {len(boxes)} predictions, more than '
                                 f'max_boxes_per_sample={self.eval_detection_configs.max_boxes_per_sample}')
            pred.add_boxes(info['token'], boxes)
            gt.add_boxes(info['token'], self._gt_boxes(info, classes))

        index = InfoFileIndex(infos)
        class_range = self.eval_detection_configs.class_range
        gt = _filter_eval_boxes(index, add_center_dist(index, gt), class_range)
        pred = _filter_eval_boxes(index, add_center_dist(index, pred), class_range)
        metrics, _ = InfoFileDetectionEval(self.eval_detection_configs, gt, pred).evaluate()
        summary = metrics.serialize()

        prefix = 'pred_instances_3d_NuScenes'
        detail = {}
        for name in classes:
            for k, v in summary['label_aps'][name].items():
                detail[f'{prefix}/{name}_AP_dist_{k}'] = float(f'{v:.4f}')
            for k, v in summary['label_tp_errors'][name].items():
                detail[f'{prefix}/{name}_{k}'] = float(f'{v:.4f}')
        for k, v in summary['tp_errors'].items():
            detail[f'{prefix}/{self.ErrNameMapping[k]}'] = float(f'{v:.4f}')
        detail[f'{prefix}/NDS'] = summary['nd_score']
        detail[f'{prefix}/mAP'] = summary['mean_ap']
        return detail
