"""Shared pytest fixtures.

The real sample data lives beside the repository at ``../shared/data`` (see its
README). Tests that need it use the fixtures below and skip with a clear reason
when it is absent; it is never copied into the repository.
"""
import os
import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(REPO_ROOT, '..', 'shared', 'data')


def shared_path(*parts: str) -> str:
    """Path under ``../shared/data``; skips the calling test if it does not exist."""
    path = osp.normpath(osp.join(SHARED_DATA, *parts))
    if not osp.exists(path):
        pytest.skip(f'real sample data not found at {path} (expected ../shared/data beside the repository)')
    return path


@pytest.fixture
def nuscenes_root() -> str:
    """``../shared/data/nuscenes``: one nuScenes sample (6 cameras) with an MMDetection3D info file."""
    return shared_path('nuscenes')


@pytest.fixture
def cityscapes_root() -> str:
    """``../shared/data/cityscapes``: one Cityscapes val image (256x128) with its gtFine maps."""
    return shared_path('cityscapes')


@pytest.fixture
def official_nuscenes_saliency() -> str:
    """The paper authors' released nuScenes saliency, ``(1, 1, 27, 48)``."""
    return shared_path('lzu_official', 'nuscenes_fixed_saliency.pkl')


@pytest.fixture
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _single_thread_torch():
    """Tests run as 2 xdist workers on 2 cores; keep torch to one thread per worker."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _forget_checkpoint_warps():
    """No test sees the saliency maps an earlier test's checkpoint registered (process-wide in each worker).

    :mod:`lzu_mm.common.checkpoint_warp` resolves a missing saliency file from
    the LZU checkpoints loaded in the process; without this, whether a missing
    file raises would depend on which tests ran before in the same worker.
    """
    yield
    module = sys.modules.get('lzu_mm.common.checkpoint_warp')
    if module is not None:
        module.clear_checkpoint_warps()


def bump_saliency(grid_shape=(31, 51), centre=(0.3, 0.7), sigma=0.08, floor=0.02):
    """A non-uniform ``(1, 1, h, w)`` saliency: a Gaussian bump at ``centre`` = (y, x) in [0, 1] plus a floor."""
    import torch

    h, w = grid_shape
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None]
    s = torch.exp(-((y - centre[0])**2 + (x - centre[1])**2) / (2 * sigma**2)) + floor
    return (s / s.sum())[None, None]
