"""Fixtures of the MMSegmentation integration tests: a Cityscapes layout made from the real sample.

``../shared/data/cityscapes`` holds one real Cityscapes val image (256x128)
with its gtFine maps. ``cityscapes_layout`` lays it out, with symlinks, as a
tiny official Cityscapes tree in a temporary folder: the image is the only
``train`` image (and the ``val`` folder links to the real one), the hold-out
split files list it as both train and mini-val, and the boundary saliency
computed from it by ``tools/saliency/boundary_saliency.py`` sits where the
configs expect it (``data/cityscapes/lzu/boundary_saliency_32x32.pkl``).
"""
import importlib.util
import os
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT, shared_path

pytest.importorskip('mmseg', reason='MMSegmentation is not installed')

CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'lzu_pspnet')
SAMPLE = 'frankfurt/frankfurt_000000_000294'
SALIENCY_REL = osp.join('data', 'cityscapes', 'lzu', 'boundary_saliency_32x32.pkl')


def config_path(name: str) -> str:
    return osp.join(CONFIG_DIR, name)


def load_tool(rel_path: str):
    """Import a script under ``tools/`` as a module."""
    path = osp.join(REPO_ROOT, rel_path)
    spec = importlib.util.spec_from_file_location(osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cityscapes_layout(cityscapes_root: str, out_dir: str) -> dict:
    """Official-layout Cityscapes tree under ``out_dir/data/cityscapes`` made of symlinks to the real sample."""
    root = osp.join(out_dir, 'data', 'cityscapes')
    for kind, suffixes in (('leftImg8bit', ['_leftImg8bit.png']),
                           ('gtFine', ['_gtFine_labelTrainIds.png', '_gtFine_labelIds.png',
                                       '_gtFine_instanceIds.png'])):
        os.makedirs(osp.join(root, kind, 'train', 'frankfurt'), exist_ok=True)
        for suffix in suffixes:
            os.symlink(osp.join(cityscapes_root, kind, 'val', SAMPLE + suffix),
                       osp.join(root, kind, 'train', SAMPLE + suffix))
        os.symlink(osp.join(cityscapes_root, kind, 'val'), osp.join(root, kind, 'val'))
    os.makedirs(osp.join(root, 'splits'))
    for name in ('train_minus_minival500.txt', 'minival500.txt'):  # one image: it is both
        with open(osp.join(root, 'splits', name), 'w') as f:
            f.write(SAMPLE + '\n')
    return dict(workdir=out_dir, root=root, saliency=osp.join(out_dir, SALIENCY_REL))


@pytest.fixture(autouse=True)
def mmseg_scope():
    """mmseg's registries as the default scope for each test, restored afterwards (no leak into other tests)."""
    from mmengine.registry import DefaultScope
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


@pytest.fixture
def cityscapes_layout(tmp_path, cityscapes_root) -> dict:
    """Cityscapes tree (symlinks) + split files + the boundary saliency, under ``tmp_path``."""
    layout = build_cityscapes_layout(osp.abspath(cityscapes_root), str(tmp_path))
    tool = load_tool('tools/saliency/boundary_saliency.py')
    tool.main([layout['root'], layout['saliency'], '--ann-file', 'splits/train_minus_minival500.txt'])
    return layout


@pytest.fixture
def sample_paths(cityscapes_root) -> dict:
    img = shared_path('cityscapes', 'leftImg8bit', 'val', SAMPLE + '_leftImg8bit.png')
    seg = shared_path('cityscapes', 'gtFine', 'val', SAMPLE + '_gtFine_labelTrainIds.png')
    return dict(img=img, seg=seg)
