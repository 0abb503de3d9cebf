"""Test-time augmentation with LZU: mmseg's ``SegTTAModel`` around ``LZUEncoderDecoder``, several scales and flips.

Each view of ``TestTimeAug`` is zoomed by its own ``FixedSaliencyZoom`` (one
per scale), records its own warp, and a flip after the zoom is composed into
that warp by the model (``post_zoom_flip``); mmseg's post-processing brings
each view's logits back to the original image (resize, flip back), where
``SegTTAModel`` averages them.
"""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.fileio import load
from mmseg.registry import MODELS, TRANSFORMS

from lzu_mm.common import check_lzu_config, use_tta
from lzu_mm.ops import uniform_saliency
from tests.mmseg.conftest import config_path, load_tool
from tests.mmseg.test_model_families import GRID, build, saliency_file, stock_config, to_lzu
from tests.mmseg.test_segmentor import _peaked_saliency, _position_model
from tests.position_harness import strong_saliency

RATIOS = (0.5, 0.75)  # the stock TTA's scale factors are 0.5 ... 1.75; two keep the CPU test short


def _tta_config(saliency: str) -> Config:
    """The stock SegFormer config made LZU, with two of its TTA scales (both flips)."""
    cfg = stock_config('segformer')
    tta = [t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug'][0]
    tta['transforms'][0] = [dict(t, scale_factor=r) for t, r in zip(tta['transforms'][0], RATIOS)]
    return to_lzu(cfg, saliency)


def _views(tta_pipeline, sample_paths):
    results = dict(img_path=sample_paths['img'], seg_map_path=sample_paths['seg'], reduce_zero_label=False,
                   seg_fields=[])
    for t in tta_pipeline:
        results = TRANSFORMS.build(t)(results)
    return pseudo_collate([results])


def _per_view(model, data):
    """What ``BaseTTAModel.test_step`` hands to ``merge_preds``: the module's prediction of each view."""
    n = len(data['inputs'])
    return [model.test_step({k: v[i] for k, v in data.items()})[0] for i in range(n)]


def test_config_check_accepts_tta_with_a_zoom_per_view(tmp_path):
    cfg = _tta_config(saliency_file(tmp_path, uniform_saliency(GRID), 'u.pth'))
    tta = [t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug'][0]
    assert [t['type'] for t in tta['transforms'][0]] == ['FixedSaliencyZoom'] * len(RATIOS)
    check_lzu_config(cfg)
    # a crop after the zoom in one view is refused, naming the view
    tta['transforms'].insert(2, [dict(type='RandomCrop', crop_size=(32, 32))])
    with pytest.raises(ValueError, match=r'tta_pipeline \(TestTimeAug view 0\): RandomCrop after FixedSaliencyZoom'):
        check_lzu_config(cfg)


def test_tools_test_tta(tmp_path, cityscapes_root):
    """tools/test.py --tta: SegTTAModel around the LZU model on the zoomed views, end to end on the real sample; an
    LZU config whose tta_pipeline only resizes (the PSPNet configs inherit mmseg's Cityscapes one) is refused before
    anything runs."""
    tool = load_tool('tools/test.py')
    name = 'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py'
    with pytest.raises(ValueError, match=r'tta_pipeline has no LZU zoom transform.*Replace each Resize'):
        tool.build_cfg(tool.parse_args([config_path(name), 'ckpt.pth', '--tta', '--work-dir', str(tmp_path)]))
    cfg = _tta_config(saliency_file(tmp_path, strong_saliency(GRID, centre=(0.5, 0.5)), 'p.pth'))
    cfg.custom_imports = dict(imports=['lzu_mm.mmseg'], allow_failed_imports=False)
    cfg.dump(str(tmp_path / 'segformer_lzu_tta.py'))
    torch.save({'state_dict': build(cfg.model).state_dict(), 'meta': {}}, str(tmp_path / 'random.pth'))
    use_tta(cfg)
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'LZUEncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline[1]['type'] == 'TestTimeAug'
    check_lzu_config(cfg)
    tool.main([str(tmp_path / 'segformer_lzu_tta.py'), str(tmp_path / 'random.pth'), '--tta', '--data-root',
               cityscapes_root, '--work-dir', str(tmp_path / 'work'), '--out', str(tmp_path / 'preds.pkl')])
    preds = load(str(tmp_path / 'preds.pkl'))
    assert len(preds) == 1 and preds[0]['pred_sem_seg']['data'].shape == (1, 128, 256)  # the original image


@torch.no_grad()
def test_segformer_tta(tmp_path, sample_paths):
    """Uniform saliency: every view's logits and the merged prediction equal EncoderDecoder's TTA; non-uniform runs."""
    cfg = _tta_config(saliency_file(tmp_path, uniform_saliency(GRID), 'u.pth'))
    base = build(dict(copy.deepcopy(cfg.model), type='EncoderDecoder')).eval()
    lzu = build(cfg.model, base.state_dict()).eval()
    data = _views(cfg.tta_pipeline, sample_paths)
    assert len(data['inputs']) == 2 * len(RATIOS)
    assert all('lzu_zoom' in s[0] for s in data['data_samples'])
    metas = [s[0].metainfo for s in data['data_samples']]
    assert sorted({m['img_shape'] for m in metas}) == [(64, 128), (96, 192)] and {m['flip'] for m in metas} == {0, 1}

    ref, out = _per_view(base, data), _per_view(lzu, copy.deepcopy(data))
    for r, o in zip(ref, out):
        assert r.seg_logits.shape == (128, 256)  # every view at the original resolution
        assert (o.seg_logits.data - r.seg_logits.data).abs().max().item() <= 1e-4
    merged_ref = MODELS.build(dict(type='SegTTAModel', module=base)).test_step(copy.deepcopy(data))[0]
    merged = MODELS.build(dict(type='SegTTAModel', module=lzu)).test_step(copy.deepcopy(data))[0]
    mean = torch.stack([r.seg_logits.data.softmax(0) for r in ref]).mean(0)
    top2 = mean.topk(2, dim=0).values
    differ = merged.pred_sem_seg.data[0] != merged_ref.pred_sem_seg.data[0]
    assert bool((top2[0] - top2[1])[differ].le(1e-4).all())  # only near-ties may differ

    cfg = _tta_config(saliency_file(tmp_path, strong_saliency(GRID, centre=(0.5, 0.5)), 'p.pth'))
    lzu = build(cfg.model, base.state_dict()).eval()
    data = _views(cfg.tta_pipeline, sample_paths)
    merged = MODELS.build(dict(type='SegTTAModel', module=lzu)).test_step(data)[0]
    assert merged.pred_sem_seg.shape == (128, 256)


@torch.no_grad()
def test_tta_views_are_merged_in_original_coordinates(tmp_path):
    """A network whose logits are its input (PositionEchoBackbone + identity head) on an image of its own pixel
    coordinates: every LZU view (two scales x two flips, strongly non-uniform warp), as handed to the merge, holds
    what the same network predicts on the uniformly resized view, in original pixels (within 0.2 target pixel away
    from the border), and the plain network on the zoomed views misses by several pixels."""
    h, w = 128, 256
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = np.stack([xs, ys], -1)
    saliency = saliency_file(tmp_path, _peaked_saliency(), 'p.pth')
    pack = dict(type='PackSegInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                                                 'flip', 'flip_direction', 'lzu_zoom'))

    def views(resize):
        tta = TRANSFORMS.build(dict(type='TestTimeAug', transforms=[
            [dict(resize, scale_factor=r, keep_ratio=True) for r in (0.25, 0.5)],
            [dict(type='RandomFlip', prob=p, direction='horizontal') for p in (0., 1.)], [pack]]))
        return pseudo_collate([tta(dict(img=coords.copy(), img_shape=(h, w), ori_shape=(h, w), img_path='coords.png'))])

    zoomed = views(dict(type='FixedSaliencyZoom', grid_shape=(32, 32), saliency=saliency, attraction_fwhm=10.))
    uniform = views(dict(type='Resize'))
    preprocessor = dict(type='SegDataPreProcessor', mean=[0., 0.], std=[1., 1.])
    lzu = _position_model('LZUEncoderDecoder', lzu=dict(cell_centre='block'), data_preprocessor=preprocessor)
    plain = _position_model('EncoderDecoder', data_preprocessor=preprocessor)
    reference = _per_view(plain, uniform)
    got = _per_view(lzu, copy.deepcopy(zoomed))
    naive = _per_view(plain, zoomed)
    assert [g.flip for g in got] == [False, True, False, True]
    for ref, out, bad in zip(reference, got, naive):
        sy, sx = (s / o for s, o in zip((h, w), ref.img_shape))  # original pixels per view pixel
        band = (slice(None), slice(int(3 * sy), -int(3 * sy)), slice(int(3 * sx), -int(3 * sx)))
        scale = torch.tensor([sx, sy])[:, None, None]
        err = (out.seg_logits.data - ref.seg_logits.data).abs() / scale
        assert err[band].max().item() <= 0.2, err[band].max().item()
        assert ((bad.seg_logits.data - ref.seg_logits.data).abs() / scale).max().item() > 3
    # the merge runs on these views (mmseg averages the softmax of the views, in the original frame)
    merged = MODELS.build(dict(type='SegTTAModel', module=lzu)).test_step(copy.deepcopy(zoomed))[0]
    assert merged.pred_sem_seg.shape == (h, w)
