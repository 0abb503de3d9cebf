"""What the framework's visualizer draws of a data sample, in numbers (for the panel title and the demo's summary).

The drawing itself is the framework's (:mod:`lzu_mm.visualization.framework`).
Framework-agnostic: reads attributes by their OpenMMLab names only
(``pred_instances`` of MMDetection, ``pred_sem_seg`` of MMSegmentation,
``pred_instances_3d`` of MMDetection3D), without importing any framework.
"""
from typing import Optional

import numpy as np


def _np(x) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def summarize_predictions(sample, score_thr: float = 0.3) -> Optional[dict]:
    """Counts of a sample's predictions as the frameworks' visualizers draw them (boxes with score > ``score_thr``).

    Args:
        sample: ``DetDataSample`` / ``SegDataSample`` / ``Det3DDataSample``
            after ``predict``.
        score_thr: the visualizers' ``pred_score_thr``.

    Returns:
        ``dict(num_boxes, num_below_score_thr, score_thr)`` for 2-D or 3-D
        boxes (3-D when the sample has no 2-D instances),
        ``dict(sem_seg_shape=[H, W], classes_present=[...])`` for a class map,
        both for a sample with both; None when the sample holds no predictions.
    """
    out = dict()
    sem = getattr(sample, 'pred_sem_seg', None)
    if sem is not None:
        data = _np(sem.data if hasattr(sem, 'data') else sem)
        data = data.reshape(data.shape[-2:])
        out.update(sem_seg_shape=list(data.shape), classes_present=sorted(int(c) for c in np.unique(data)))
    inst = getattr(sample, 'pred_instances', None)
    inst3d = getattr(sample, 'pred_instances_3d', None)
    scores = None
    if inst is not None and 'scores' in inst and (len(inst) > 0 or inst3d is None):
        scores = _np(inst.scores)  # 2-D boxes, also when there are none; mono-3D samples carry an empty one
    elif inst3d is not None and 'scores_3d' in inst3d:
        scores = _np(inst3d.scores_3d)
    if scores is not None:
        drawn = scores > score_thr
        out.update(num_boxes=int(drawn.sum()), num_below_score_thr=int((~drawn).sum()), score_thr=float(score_thr))
    return out or None


def predictions_note(summary: Optional[dict]) -> str:
    """The panel title's account of a :func:`summarize_predictions` dict, e.g. ``'2 objects with score > 0.3; 1
    below the threshold'`` or ``'class map'``."""
    if not summary:
        return 'no predictions'
    if 'num_boxes' not in summary:
        return 'class map'
    note = f"{summary['num_boxes']} objects with score > {summary['score_thr']:g}"
    if summary['num_below_score_thr']:
        note += f"; {summary['num_below_score_thr']} below the threshold"
    return note
