"""LZUSegLocalVisualizer: mmseg's SegLocalVisualizer drawing a centre-cropped sample on the re-read full frame."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from lzu_mm.mmseg.visualizer import LZUSegLocalVisualizer, crop_to_sample
from tests.conftest import REPO_ROOT


def _sample(shape, crop_box=None):
    sample = SegDataSample(metainfo=dict(img_path='frame.png', **({} if crop_box is None else {'crop_box': crop_box})))
    sample.pred_sem_seg = PixelData(data=torch.zeros(1, *shape, dtype=torch.long))
    return sample


def test_crop_to_sample():
    frame = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
    box = (3, 1, 8, 6)  # x1, y1, x2, y2: a 5x5 crop
    np.testing.assert_array_equal(crop_to_sample(frame, _sample((5, 5), box)), frame[1:6, 3:8])
    crop = frame[1:6, 3:8]
    assert crop_to_sample(crop, _sample((5, 5), box)) is crop  # already the crop
    assert crop_to_sample(frame, _sample((6, 10))) is frame  # nothing cropped, nothing recorded
    assert crop_to_sample(frame, None) is frame
    with pytest.raises(ValueError, match=r"pred_sem_seg is 5x5 but the image is 6x10 \(frame.png\).*'crop_box'"):
        crop_to_sample(frame, _sample((5, 5)))  # a crop that PackSegInputs did not keep
    with pytest.raises(ValueError, match='does not fit'):
        crop_to_sample(frame[:4], _sample((5, 5), box))


def test_visualizer_draws_on_the_crop(tmp_path):
    visualizer = LZUSegLocalVisualizer(name='lzu_test_seg_visualizer', alpha=1.0)
    visualizer.set_dataset_meta(classes=('a', 'b'), palette=[[0, 0, 0], [255, 0, 0]])
    frame = np.zeros((6, 10, 3), dtype=np.uint8)
    sample = _sample((5, 5), (3, 1, 8, 6))
    sample.pred_sem_seg.data[:] = 1
    out = str(tmp_path / 'painted.png')
    visualizer.add_datasample('frame', frame, sample, out_file=out, with_labels=False)
    painted = visualizer.get_image()
    assert painted.shape == (5, 5, 3) and (painted == [255, 0, 0]).all()
    assert osp.isfile(out)


def test_pspnet_configs_use_it():
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'lzu_pspnet', 'pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py'))
    assert cfg.visualizer.type == 'LZUSegLocalVisualizer'
    assert all('crop_box' in cfg[f'{split}_pipeline'][-1]['meta_keys'] for split in ('train', 'test'))
