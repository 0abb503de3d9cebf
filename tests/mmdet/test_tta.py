"""Test-time augmentation with LZU: mmdet's ``DetTTAModel`` around ``LZURetinaNet``, several scales and flips.

The stock ``mmdet::retinanet/retinanet_tta.py`` pipeline with its ``Resize``
steps replaced by ``FixedSaliencyZoom``: each view is zoomed by its own
transform (one per scale) and records its own warp; the flip after it is
composed into that warp by the model (``post_zoom_flip``, from the packed
``homography_matrix``); the model predicts boxes in original-image pixels of
the flipped view, which ``DetTTAModel`` flips back and merges with NMS.
"""
import copy

import numpy as np
import torch
from mmdet.registry import DATASETS, MODELS
from mmdet.structures.bbox import bbox_flip
from mmengine.dataset import Compose, pseudo_collate
from mmengine.hub import get_config
from torch import nn

from lzu_mm.common import check_lzu_config
from lzu_mm.ops import uniform_saliency

from .conftest import bump_saliency, save_pickled_saliency
from .test_detectors import GRID, _extent, _ImagePyramid, assert_same_predictions, box_on_black, build, model_cfg

SCALES = ((288, 162), (224, 126))  # the stock TTA's scales are (1333, 800), (666, 400), (2000, 1200): CPU budget
META = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction', 'lzu_zoom',
        'homography_matrix')


def tta_config(saliency: str):
    """The stock RetinaNet TTA config, ``Resize`` -> ``FixedSaliencyZoom`` (the converter's job, issue 10a)."""
    cfg = get_config('mmdet::retinanet/retinanet_tta.py')
    tta = cfg.tta_pipeline[1]
    assert tta['type'] == 'TestTimeAug' and all(t['type'] == 'Resize' for t in tta['transforms'][0])
    tta['transforms'][0] = [dict(type='FixedSaliencyZoom', scale=s, keep_ratio=True, saliency=saliency,
                                 grid_shape=GRID, attraction_fwhm=4.) for s in SCALES]
    tta['transforms'][-1][0]['meta_keys'] = META
    cfg.model = dict(type='LZURetinaNet')
    return cfg


def _views(argoverse_hd, pipeline):
    dataset = DATASETS.build(
        dict(type='ArgoverseHDDataset', data_root=argoverse_hd['root'], ann_file=argoverse_hd['val'],
             data_prefix=dict(img=argoverse_hd['img_prefix']), test_mode=True, serialize_data=False,
             pipeline=pipeline))
    return pseudo_collate([dataset[0]])


def _per_view(model, data):
    return [model.test_step({k: v[i] for k, v in data.items()})[0] for i in range(len(data['inputs']))]


def _tta(model, cfg):
    return MODELS.build(dict(cfg.tta_model, module=model)).eval()


@torch.no_grad()
def test_retinanet_tta(argoverse_hd, tmp_path):
    """Uniform saliency: each view and the merged detections equal RetinaNet's TTA; a non-uniform warp runs."""
    cfg = tta_config(save_pickled_saliency(uniform_saliency(GRID), tmp_path / 'uniform.pkl'))
    check_lzu_config(cfg)  # a zoom per view, a flip after it: accepted
    lzu = build(model_cfg(type='LZURetinaNet'))
    plain = build(model_cfg(type='RetinaNet'), seed=1)
    plain.load_state_dict(lzu.state_dict(), strict=True)
    data = _views(argoverse_hd, cfg.tta_pipeline)
    assert len(data['inputs']) == 4
    metas = [s[0].metainfo for s in data['data_samples']]
    assert {m['img_shape'] for m in metas} == {(162, 288), (126, 224)} and {m['flip'] for m in metas} == {0, 1}
    plain_data = copy.deepcopy(data)
    for view in plain_data['data_samples']:
        del view[0].lzu_zoom
    # every view in original-image coordinates (1600 x 900): 1e-4 plus 2 float32 ulps
    assert_same_predictions(_per_view(lzu, copy.deepcopy(data)), _per_view(plain, plain_data), ulps=2)
    merged = _tta(lzu, cfg).test_step(copy.deepcopy(data))
    merged_plain = _tta(plain, cfg).test_step(plain_data)
    assert_same_predictions(merged, merged_plain, ulps=2)
    assert float(merged[0].pred_instances.bboxes[:, 2].max()) > 288  # original pixels, not the views'

    cfg = tta_config(save_pickled_saliency(bump_saliency(GRID), tmp_path / 'bump.pkl'))
    merged = _tta(lzu, cfg).test_step(_views(argoverse_hd, cfg.tta_pipeline))[0].pred_instances
    assert len(merged) > 0 and torch.isfinite(merged.bboxes).all()
    assert float(merged.bboxes[:, 2].max()) > 288 and float(merged.bboxes[:, 2].max()) <= 1600 + 1e-3


@torch.no_grad()
def test_tta_views_unzoom_to_the_original_box(tmp_path):
    """A white box on black, a saliency bump on it: in every view (two scales x flipped or not) the zoom magnifies
    the box, and the unzoomed features put it where the view's uniform resize would; mapped to original pixels and
    flipped back as DetTTAModel does, it is the original box."""
    box, saliency = box_on_black(tmp_path)
    cfg = tta_config(saliency)
    cfg.tta_pipeline[1]['transforms'][0] = [dict(t, scale=s) for t, s in zip(cfg.tta_pipeline[1]['transforms'][0],
                                                                             ((400, 240), (320, 192)))]
    cfg.tta_pipeline[1]['transforms'].pop(2)  # LoadAnnotations: no annotation file here
    packed = Compose(cfg.tta_pipeline)(dict(img_path=str(tmp_path / 'box.png'), img_id=0))
    model = build(model_cfg(type='LZURetinaNet'))
    model.backbone, model.neck = nn.Identity(), _ImagePyramid()
    for inputs, sample in zip(packed['inputs'], packed['data_samples']):
        data = model.data_preprocessor(pseudo_collate([dict(inputs=inputs, data_samples=sample)]), False)
        ih, iw = sample.img_shape
        sx, sy = sample.scale_factor
        uniform = box * np.array([sx, sy, sx, sy])
        zoomed = _extent(inputs.float().mean(0).numpy() > 127)
        assert zoomed[2] - zoomed[0] > 1.3 * (uniform[2] - uniform[0])  # the box is magnified in the zoomed view
        with model.lzu_context(data['inputs'], data['data_samples']) as x:
            feats = model.extract_feat(x)
        unzoomed = _extent(feats[0][0].mean(0).numpy()[:ih, :iw] > 0)  # stride 1, in the (flipped) view's pixels
        original = torch.from_numpy(unzoomed / np.array([sx, sy, sx, sy]))[None]
        if sample.flip:
            original = bbox_flip(original, sample.ori_shape, sample.flip_direction)
        np.testing.assert_allclose(original[0].numpy(), box, atol=1.5 / sx)
    assert [s.flip for s in packed['data_samples']] == [True, False, True, False]
