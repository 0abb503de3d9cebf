"""tools/saliency/boundary_saliency.py on the real Cityscapes sample and on bad input."""
import importlib.util
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch

from lzu_mm.ops import LZWarp, load_saliency
from tests.conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location('boundary_saliency',
                                               osp.join(REPO_ROOT, 'tools', 'saliency', 'boundary_saliency.py'))
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def test_boundary_mask_marks_both_sides_and_skips_ignore():
    label = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [255, 255, 1, 1]], dtype=np.uint8)
    mask = tool.boundary_mask(label, ignore_index=255)
    expected = np.array([[0, 1, 1, 0],
                         [0, 1, 1, 0],
                         [0, 0, 0, 0]], dtype=bool)  # 0|255 and 255|1 edges are ignored
    np.testing.assert_array_equal(mask, expected)


def test_real_sample(cityscapes_root, tmp_path):
    out = str(tmp_path / 'sal' / 'boundary.pkl')
    saliency = tool.main([cityscapes_root, out, '--split', 'val', '--grid-shape', '16', '32', '--crop-size', '128'])
    assert saliency.shape == (1, 1, 16, 32) and saliency.dtype == torch.float32
    assert abs(saliency.sum().item() - 1) < 1e-5
    with open(out, 'rb') as f:  # the authors' format: a pickled (1, 1, h, w) tensor
        assert torch.equal(pickle.load(f), saliency)
    png = cv2.imread(osp.splitext(out)[0] + '.png')  # the map with its colour bar (tests/visualization)
    assert png is not None and png.shape[1] > png.shape[0] > 16

    # independent check: boundary density of the centre crop, area-averaged onto the grid
    label = cv2.imread(osp.join(cityscapes_root, 'gtFine', 'val', 'frankfurt',
                                'frankfurt_000000_000294_gtFine_labelTrainIds.png'), cv2.IMREAD_UNCHANGED)
    crop = label[:, 64:192]
    b = np.zeros(crop.shape, bool)
    for dy, dx in ((0, 1), (1, 0)):
        a, c = crop[:crop.shape[0] - dy, :crop.shape[1] - dx], crop[dy:, dx:]
        edge = (a != c) & (a != 255) & (c != 255)
        b[:crop.shape[0] - dy, :crop.shape[1] - dx] |= edge
        b[dy:, dx:] |= edge
    cells = b.reshape(16, 8, 32, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(saliency[0, 0].numpy(), cells / cells.sum(), rtol=1e-5, atol=1e-7)
    assert saliency.max() > 3 * saliency.mean()  # boundaries concentrate: not a uniform map

    # the .npy / .pth outputs and the configs' loader agree; the warp builds from it
    for suffix in ('.npy', '.pth'):
        other = str(tmp_path / f'b{suffix}')
        tool.main([cityscapes_root, other, '--split', 'val', '--grid-shape', '16', '32', '--crop-size', '128'])
        assert torch.allclose(load_saliency(other, (16, 32)), saliency)
    LZWarp(load_saliency(out, (16, 32)), attraction_fwhm=10.).grid()


def test_bad_input(cityscapes_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='no label maps'):
        tool.main([cityscapes_root, str(tmp_path / 's.pkl'), '--split', 'train'])
    with pytest.raises(ValueError, match=r'crop size 512 is larger than label map .*\(128x256 pixels\)'):
        tool.main([cityscapes_root, str(tmp_path / 's.pkl'), '--split', 'val', '--crop-size', '512'])
    with pytest.raises(FileNotFoundError, match='--ann-file'):
        tool.main([cityscapes_root, str(tmp_path / 's.pkl'), '--split', 'val', '--ann-file', 'missing.txt'])
    with pytest.raises(SystemExit):
        tool.main([cityscapes_root, str(tmp_path / 's.txt'), '--split', 'val'])
    flat = tmp_path / 'flat'
    os.makedirs(flat / 'gtFine' / 'train' / 'x')
    cv2.imwrite(str(flat / 'gtFine' / 'train' / 'x' / 'a_gtFine_labelTrainIds.png'), np.full((8, 8), 3, np.uint8))
    with pytest.raises(ValueError, match='no semantic boundary'):
        tool.main([str(flat), str(tmp_path / 's.pkl')])
