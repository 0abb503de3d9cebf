"""FOVEA (the whole detector on the zoomed image) on real images: a uniform saliency is the base detector, boxes map
back through a known warp to where the object is, ground truth lands on the zoomed object, training runs."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.structures import InstanceData

from mmdet.structures import DetDataSample

from .conftest import bump_saliency, save_pickled_saliency
from .test_detectors import (GRID, META, assert_same_predictions, batch, build, bump_file, model_cfg,  # noqa: F401
                             predict_both, strip_lzu, uniform_file, zoom_cfg)

BASE = dict(retinanet='RetinaNet', fasterrcnn='FasterRCNN')


@pytest.mark.parametrize('kind', ['retinanet', 'fasterrcnn'])
def test_uniform_saliency_equals_base_detector(argoverse_hd, uniform_file, kind):  # noqa: F811
    """Pipeline zoom with a uniform saliency, padded batch: FOVEA's predictions (network frame and original image)
    and training losses are the base detector's on the same tensor within 1e-4."""
    fovea = build(model_cfg(kind, type='FOVEA' + BASE[kind]))
    plain = build(model_cfg(kind, type=BASE[kind]), seed=1)
    plain.load_state_dict(fovea.state_dict(), strict=True)
    data = batch(argoverse_hd, [zoom_cfg(uniform_file, (288, 162)), zoom_cfg(uniform_file, (224, 126))], fovea)
    assert data['data_samples'][1].img_shape[0] < data['data_samples'][1].batch_input_shape[0]
    assert_same_predictions(*predict_both(fovea, plain, data, rescale=False))
    assert_same_predictions(*predict_both(fovea, plain, data, rescale=True), ulps=2)
    fovea.train(), plain.train()
    torch.manual_seed(0)
    ours = fovea.loss(data['inputs'], data['data_samples'])
    torch.manual_seed(0)
    theirs = plain.loss(data['inputs'], strip_lzu(data['data_samples']))
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        for a, b in zip(ours[key] if isinstance(value, list) else [ours[key]], value if isinstance(value, list)
                        else [value]):
            assert abs(float(a) - float(b)) <= 1e-4 * max(1., abs(float(b))), key


def _boxes(sample):
    boxes = sample.gt_instances.bboxes
    return boxes.tensor if hasattr(boxes, 'tensor') else boxes


def _crossings(profile, level=127.5):
    """Continuous positions where a 1-D profile (pixel centres at i + 0.5) first rises above / last falls below."""
    above = np.nonzero(profile > level)[0]
    i, j = above[0], above[-1]
    rise = i - 1 + (level - profile[i - 1]) / (profile[i] - profile[i - 1]) + 0.5
    fall = j + (profile[j] - level) / (profile[j] - profile[j + 1]) + 0.5
    return rise, fall


@pytest.mark.parametrize('flip', [False, True])
def test_known_warp_maps_boxes_back_within_half_a_pixel(tmp_path, flip):
    """A white box on black, zoomed by a strong warp centred on it (magnified ~2x): the box found in the zoomed
    image (its sub-pixel edges) maps back with FOVEA's forward warp to the true box within 0.5 px of the network
    input frame (1 px of the original), and the ground truth maps into the zoomed image onto those edges (within
    0.5 un-warped px, i.e. 0.72 zoomed px at this 1.43x magnification)."""
    import mmcv
    h, w = 480, 800
    box = np.array([500., 100., 620., 200.])  # x1, y1, x2, y2 in the original image
    img = np.zeros((h, w, 3), np.uint8)
    img[int(box[1]):int(box[3]), int(box[0]):int(box[2])] = 255
    mmcv.imwrite(img, str(tmp_path / 'box.png'))
    centre = ((box[1] + box[3]) / 2 / (h - 1), (box[0] + box[2]) / 2 / (w - 1))
    path = save_pickled_saliency(bump_saliency(GRID, centre=centre, sigma=0.05, floor=0.001), tmp_path / 'bump.pkl')
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True), zoom_cfg(path, (400, 240)),
        dict(type='RandomFlip', prob=1.0 if flip else 0.0),
        dict(type='PackDetInputs', meta_keys=META + ('homography_matrix', ))
    ])
    instances = [dict(bbox=box.tolist(), bbox_label=0, ignore_flag=0)]
    packed = pipeline(dict(img_path=str(tmp_path / 'box.png'), img_id=0, instances=instances))
    model = build(model_cfg(type='FOVEARetinaNet'))
    data = model.data_preprocessor(pseudo_collate([packed]), False)
    sample = data['data_samples'][0]
    scale = np.array(sample.scale_factor * 2)
    expected = box * scale  # the box in the 400 x 240 frame of the labels
    if flip:
        expected = np.array([400 - expected[2], expected[1], 400 - expected[0], expected[3]])
    zoomed = packed['inputs'].float().mean(0).numpy()
    cy, cx = [int(v) for v in np.argwhere(zoomed > 127.5).mean(0)]
    x1, x2 = _crossings(zoomed[cy])
    y1, y2 = _crossings(zoomed[:, cx])
    found = np.array([x1, y1, x2, y2])
    assert found[2] - found[0] > 1.3 * (expected[2] - expected[0])  # magnified: not a uniform resize

    inputs, state = model.lzu_zoom(data['inputs'], data['data_samples'])
    pred = DetDataSample(metainfo=sample.metainfo)
    pred.pred_instances = InstanceData(bboxes=torch.tensor([found], dtype=torch.float32), scores=torch.ones(1),
                                       labels=torch.zeros(1, dtype=torch.long))
    back = model.fovea_unzoom_predictions([pred], state, rescale=False)[0].pred_instances.bboxes[0].numpy()
    assert np.abs(back - expected).max() < 0.5, (back, expected)  # measured 0.16
    pred.pred_instances.bboxes = torch.tensor([found], dtype=torch.float32)
    original = model.fovea_unzoom_predictions([pred], state, rescale=True)[0].pred_instances.bboxes[0].numpy()
    true = box if not flip else np.array([w - box[2], box[1], w - box[0], box[3]])
    assert np.abs(original - true).max() < 1.0  # measured 0.31 original pixels
    gt = _boxes(model.fovea_zoom_ground_truth(data['data_samples'], state)[0])[0].numpy()
    assert np.abs(gt - found).max() < 0.5 * (found[2] - found[0]) / (expected[2] - expected[0])  # measured 0.18
    assert np.abs(_boxes(sample)[0].numpy() - expected).max() < 1e-3  # the input is unchanged


@pytest.mark.parametrize('kind', ['retinanet', 'fasterrcnn'])
def test_fovea_trains_and_predicts_with_a_warp(argoverse_hd, bump_file, kind):  # noqa: F811
    """Non-uniform warp: ground truth moves into the zoomed frame, finite losses whose gradients reach the
    backbone, predictions in the original image."""
    model = build(model_cfg(kind, type='FOVEA' + BASE[kind])).train()
    data = batch(argoverse_hd, [zoom_cfg(bump_file, (288, 162)), zoom_cfg(bump_file, (224, 126))], model,
                 training=True, indices=(1, 2))
    with torch.no_grad():
        _, state = model.lzu_zoom(data['inputs'], data['data_samples'])
    zoomed = model.fovea_zoom_ground_truth(data['data_samples'], state)
    moved = (_boxes(zoomed[0]) - _boxes(data['data_samples'][0])).abs()
    assert float(moved.max()) > 2  # pixels
    losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and float(total) > 0
    total.backward()
    assert sum(float(p.grad.abs().sum()) for n, p in model.named_parameters()
               if n.startswith('backbone.layer4') and p.grad is not None) > 0
    model.eval()
    with torch.no_grad():
        preds = model.predict(data['inputs'], data['data_samples'])
    for p, s in zip(preds, data['data_samples']):
        boxes = p.pred_instances.bboxes
        assert len(boxes) > 0 and float(boxes[:, 2].max()) <= s.ori_shape[1] + 1e-3
        assert float(boxes[:, 3].max()) <= s.ori_shape[0] + 1e-3 and float(boxes[:, 2].max()) > 288
