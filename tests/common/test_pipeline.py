"""check_lzu_pipeline / check_lzu_config: transforms after the zoom are refused at config build."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from lzu_mm.common import check_lzu_config, check_lzu_pipeline
from tests.conftest import REPO_ROOT

ZOOM = dict(type='FixedSaliencyZoom', scale=(960, 600), saliency='s.pkl', grid_shape=(31, 51))
PACK = dict(type='PackDetInputs', meta_keys=('img_shape', 'flip', 'flip_direction', 'lzu_zoom'))


@pytest.mark.parametrize('after', [
    dict(type='RandomCrop', crop_size=(512, 512)),
    dict(type='mmdet.RandomCenterCropPad', crop_size=(512, 512)),
    dict(type='Mosaic', img_scale=(640, 640)),
    dict(type='MixUp', img_scale=(640, 640)),
    dict(type='RandomAffine'),
    dict(type='AffineResize', img_scale=(1280, 384)),
    dict(type='Resize', scale=(480, 300)),
    dict(type='RandomResize', scale=(480, 300)),
    dict(type='CenterSquareCrop'),
    dict(type='RandomApply', transforms=[dict(type='RandomCrop', crop_size=(512, 512))]),
    dict(type='FixedSaliencyZoom3D', scale=(400, 225), saliency='s.pkl', grid_shape=(27, 48)),
])
def test_geometric_transforms_after_the_zoom_are_refused(after):
    name = after['type'] if after['type'] != 'RandomApply' else 'RandomCrop'
    name = name.split('.')[-1]
    with pytest.raises(ValueError, match=rf'train_dataloader.dataset: .*{name}.*FixedSaliencyZoom'):
        check_lzu_pipeline([dict(type='LoadImageFromFile'), ZOOM, after, PACK], 'train_dataloader.dataset')


def test_flips_pads_and_photometric_steps_may_follow_and_anything_may_precede():
    check_lzu_pipeline([
        dict(type='LoadImageFromFile'), dict(type='RandomCrop', crop_size=(900, 1500)), dict(type='RandomFlip'),
        ZOOM, dict(type='RandomFlip', prob=0.5), dict(type='PhotoMetricDistortion'), dict(type='Pad', size=(608, 960)),
        dict(type='LoadAnnotations'), dict(type='CenterSquareCrop', keys=('gt_seg_map', )), PACK
    ])
    check_lzu_pipeline([dict(type='Resize', scale=(480, 300)), dict(type='RandomCrop', crop_size=(5, 5))])  # no zoom


def test_packing_must_pass_the_record_and_the_flip_state():
    with pytest.raises(ValueError, match=r"meta_keys lacks \['lzu_zoom'\]"):
        check_lzu_pipeline([ZOOM, dict(type='PackSegInputs', meta_keys=('img_shape', ))])
    with pytest.raises(ValueError, match=r"lacks \['flip', 'flip_direction'\].*mirror"):
        check_lzu_pipeline([ZOOM, dict(type='RandomFlip'), dict(type='PackDetInputs', meta_keys=('lzu_zoom', ))])
    check_lzu_pipeline([ZOOM, dict(type='PackDetInputs', meta_keys=('img_shape', 'lzu_zoom'))])  # no flip: fine


def test_config_dataloaders_and_dataset_wrappers_are_checked():
    bad = [ZOOM, dict(type='RandomCrop', crop_size=(5, 5)), PACK]
    cfg = Config(dict(val_dataloader=dict(dataset=dict(type='RepeatDataset', dataset=dict(pipeline=bad)))))
    with pytest.raises(ValueError, match=r'val_dataloader.dataset.dataset: RandomCrop'):
        check_lzu_config(cfg)
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[dict(pipeline=[ZOOM, PACK]),
                                                                                         dict(pipeline=bad)]))))
    with pytest.raises(ValueError, match=r'train_dataloader.dataset.datasets\[1\]: RandomCrop'):
        check_lzu_config(cfg)


def test_every_config_of_the_repository_passes():
    configs = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.py')))
    assert len(configs) >= 30
    for path in configs:
        check_lzu_config(Config.fromfile(path))
