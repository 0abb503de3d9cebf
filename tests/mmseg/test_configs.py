"""The Table 3 configs: composition, the paper's protocol, and clear errors for a missing saliency file."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmseg.registry import DATASETS

import lzu_mm.mmseg  # noqa: F401
from tests.mmseg.conftest import config_path

SIZES = (64, 128, 256, 512)


def _pair(size):
    uni = Config.fromfile(config_path(f'pspnet_r50-fpn_4xb2-80k_cityscapes-{size}x{size}.py'))
    lzu = Config.fromfile(config_path(f'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-{size}x{size}.py'))
    return uni, lzu


def _step(pipeline, kind):
    return [s for s in pipeline if s['type'] == kind]


@pytest.mark.parametrize('size', SIZES)
def test_protocol(size):
    uni, lzu = _pair(size)
    for cfg in (uni, lzu):
        # PSPNet R50 + FPN from mmseg's own base
        assert cfg.model.backbone.type == 'ResNetV1c' and cfg.model.backbone.depth == 50
        assert cfg.model.neck.type == 'FPN' and cfg.model.decode_head.type == 'PSPHead'
        assert cfg.model.data_preprocessor.size == (size, size)
        # train on train minus mini-val, validate on mini-val 10 times, keep the best, test on val
        assert cfg.train_dataloader.dataset.ann_file == 'splits/train_minus_minival500.txt'
        assert cfg.val_dataloader.dataset.ann_file == 'splits/minival500.txt'
        assert cfg.val_dataloader.dataset.data_prefix.img_path == 'leftImg8bit/train'
        assert cfg.test_dataloader.dataset.data_prefix.img_path == 'leftImg8bit/val'
        assert cfg.train_cfg.max_iters == 10 * cfg.train_cfg.val_interval
        assert cfg.default_hooks.checkpoint.save_best == 'mIoU'
        assert cfg.val_evaluator.type == 'IoUMetric'
        assert [e.type for e in cfg.test_evaluator] == ['ClasswiseIoUMetric', 'CenterCropCityscapesMetric']
        for pipeline in (cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline):
            assert _step(pipeline, 'CenterSquareCrop')[0].get('crop_size') is None
    assert uni.model.type == 'EncoderDecoder' and lzu.model.type == 'LZUEncoderDecoder'
    for pipeline in (lzu.train_dataloader.dataset.pipeline, lzu.test_dataloader.dataset.pipeline):
        zoom = _step(pipeline, 'FixedSaliencyZoom')[0]
        assert zoom.scale == (size, size) and zoom.grid_shape == (32, 32)
        assert 'lzu_zoom' in _step(pipeline, 'PackSegInputs')[0].meta_keys
    # LZU changes only the model type and the resize step
    assert lzu.model.to_dict() == dict(uni.model.to_dict(), type='LZUEncoderDecoder')
    strip = [s['type'] for s in uni.train_dataloader.dataset.pipeline]
    assert [s['type'] for s in lzu.train_dataloader.dataset.pipeline] == [
        'FixedSaliencyZoom' if t == 'Resize' else t for t in strip]


def test_missing_saliency_fails_at_dataset_build(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, lzu = _pair(64)
    with pytest.raises(FileNotFoundError, match=r"saliency file 'data/cityscapes/lzu/boundary_saliency_32x32.pkl'"):
        DATASETS.build(lzu.test_dataloader.dataset)


def test_real_sample_through_the_config_pipelines(cityscapes_layout, monkeypatch):
    monkeypatch.chdir(cityscapes_layout['workdir'])
    uni, lzu = _pair(64)
    for cfg in (uni, lzu):
        train = DATASETS.build(cfg.train_dataloader.dataset)[0]
        assert train['inputs'].shape == (3, 64, 64) and train['data_samples'].gt_sem_seg.shape == (64, 64)
        test = DATASETS.build(cfg.test_dataloader.dataset)[0]
        assert test['inputs'].shape == (3, 64, 64)
        assert test['data_samples'].gt_sem_seg.shape == (128, 128)  # the crop at full resolution
        assert test['data_samples'].ori_shape == (128, 128)
        assert ('lzu_zoom' in test['data_samples']) == (cfg is lzu)
    assert osp.isfile(cityscapes_layout['saliency'])
