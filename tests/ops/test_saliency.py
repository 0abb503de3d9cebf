"""Saliency files: the authors' format and ours read back; bad files fail naming the file and shape."""
import numpy as np
import pytest
import torch

from lzu_mm.ops import load_saliency, uniform_saliency
from lzu_mm.ops.saliency import save_saliency


@pytest.mark.parametrize('suffix', ['.pkl', '.npy', '.pth'])
def test_save_then_load_round_trip(tmp_path, suffix):
    sal = torch.rand(1, 1, 5, 7) + 0.1
    path = str(tmp_path / f'sal{suffix}')
    save_saliency(sal, path, png=str(tmp_path / 'sal.png'))
    assert torch.equal(load_saliency(path, (5, 7)), sal)
    assert (tmp_path / 'sal.png').stat().st_size > 0


def test_authors_file_loads(official_nuscenes_saliency):
    sal = load_saliency(official_nuscenes_saliency, (27, 48))
    assert sal.shape == (1, 1, 27, 48) and sal.dtype == torch.float32
    assert abs(float(sal.sum()) - 1) < 1e-4


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pkl'):
        load_saliency(str(tmp_path / 'missing.pkl'))
    path = str(tmp_path / 'sal.npy')
    np.save(path, np.ones((5, 7), dtype=np.float32))
    with pytest.raises(ValueError, match=r"sal.npy.*grid shape \(5, 7\).*\(1, 1, 31, 51\)"):
        load_saliency(path, (31, 51))
    np.save(path, np.ones((5, 7), dtype=np.int64))
    with pytest.raises(ValueError, match='sal.npy.*floating-point'):
        load_saliency(path)
    np.save(path, np.ones((2, 5, 7), dtype=np.float32))
    with pytest.raises(ValueError, match=r'sal.npy.*\(1, 1, h, w\)'):
        load_saliency(path)
    with pytest.raises(ValueError, match='unknown suffix'):
        save_saliency(uniform_saliency((3, 3)), str(tmp_path / 'sal.txt'))
