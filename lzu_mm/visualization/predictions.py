"""Turn an OpenMMLab data sample's predictions into the plain prediction dict of the panels.

Framework-agnostic: reads attributes by their OpenMMLab names only
(``pred_instances`` of MMDetection, ``pred_sem_seg`` of MMSegmentation,
``pred_instances_3d`` with ``cam2img`` of MMDetection3D), without importing
any framework.
"""
from typing import Optional, Sequence

import numpy as np


def _np(x):
    if x is None:
        return None
    if hasattr(x, 'tensor'):  # mmdet3d boxes / mmdet box types
        x = x.tensor
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _meta(sample) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else dict(sample)


def project_corners(corners: np.ndarray, cam2img, scale_factor=None, min_depth: float = 0.1) -> np.ndarray:
    """Project ``[N, 8, 3]`` camera-frame box corners to ``[N, 8, 2]`` original-image pixels.

    Args:
        corners: corners in the camera frame (x right, y down, z forward, metres).
        cam2img: ``3x3`` / ``3x4`` / ``4x4`` intrinsics of the (possibly
            resized) network input, as in the sample's metainfo.
        scale_factor: ``(sx, sy)`` of the resize that ``cam2img`` includes;
            projections are divided by it to land in original pixels.
        min_depth: boxes with a corner nearer than this (metres) are dropped.

    Returns:
        ``[M, 8, 2]`` pixel corners of the boxes fully in front of the camera.
    """
    k = np.asarray(cam2img, dtype=np.float64)
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 8, 3)
    keep = (corners[..., 2] > min_depth).all(-1)
    pts = corners[keep] @ k[:3, :3].T
    if k.shape[1] > 3:
        pts = pts + k[:3, 3]
    uv = pts[..., :2] / pts[..., 2:3]
    if scale_factor is not None:
        sf = np.asarray(scale_factor, dtype=np.float64).reshape(-1)
        uv = uv / sf[:2] if sf.size >= 2 else uv / sf[0]
    return uv


def predictions_from_sample(sample,
                            score_thr: float = 0.3,
                            class_names: Optional[Sequence[str]] = None,
                            palette=None) -> Optional[dict]:
    """The predictions of one data sample, in original-image pixels (see :mod:`lzu_mm.visualization.panels`).

    Args:
        sample: ``DetDataSample`` / ``SegDataSample`` / ``Det3DDataSample``
            after ``predict`` (boxes and masks already rescaled to the original).
        score_thr: boxes below this score are dropped.
        class_names: class names (``dataset_meta['classes']``).
        palette: RGB colours per class (``dataset_meta['palette']``).

    Returns:
        The prediction dict (with ``score_thr`` and ``num_below_thr``, the
        number of objects dropped by it), or None when the sample holds no
        predictions.
    """
    out = dict(class_names=list(class_names) if class_names is not None else None, palette=palette,
               score_thr=float(score_thr), num_below_thr=0)
    found = False
    sem = getattr(sample, 'pred_sem_seg', None)
    if sem is not None:
        data = _np(sem.data if hasattr(sem, 'data') else sem)
        out['sem_seg'] = data.reshape(data.shape[-2:]).astype(np.int64)
        found = True
    inst = getattr(sample, 'pred_instances', None)
    inst3d = getattr(sample, 'pred_instances_3d', None)
    # 2-D boxes, also when there are none (the panel then says '0 objects'); mono-3D samples carry an empty one
    if inst is not None and 'bboxes' in inst and (len(inst) > 0 or inst3d is None):
        scores = _np(inst.scores).astype(float)
        keep = scores >= score_thr
        out.update(bboxes=_np(inst.bboxes)[keep], labels=_np(inst.labels)[keep].astype(int), scores=scores[keep],
                   num_below_thr=int((~keep).sum()))
        found = True
    meta = _meta(sample)
    if inst3d is not None and 'bboxes_3d' in inst3d and meta.get('cam2img') is not None:
        scores = _np(inst3d.scores_3d).astype(float)
        keep = scores >= score_thr
        if 'bboxes' not in out:
            out['num_below_thr'] = int((~keep).sum())
        corners = _np(inst3d.bboxes_3d.corners)[keep]
        depth_ok = (corners[..., 2] > 0.1).all(-1)
        out['corners_2d'] = project_corners(corners[depth_ok], meta['cam2img'], meta.get('scale_factor'))
        labels = _np(inst3d.labels_3d)[keep][depth_ok].astype(int)
        if 'bboxes' not in out:
            out.update(labels=labels, scores=scores[keep][depth_ok])
        found = True
    return out if found else None
