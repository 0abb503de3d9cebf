"""tools/misc/cityscapes_holdout_split.py: deterministic, disjoint, complete, usable as mmseg ann_file."""
import importlib.util
import os
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location('cityscapes_holdout_split',
                                               osp.join(REPO_ROOT, 'tools', 'misc', 'cityscapes_holdout_split.py'))
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def _fake_train(root, n=30):
    names = []
    for i in range(n):
        city = ('aachen', 'bochum', 'zurich')[i % 3]
        os.makedirs(osp.join(root, 'leftImg8bit', 'train', city), exist_ok=True)
        name = f'{city}/{city}_{i:06d}_000019'
        open(osp.join(root, 'leftImg8bit', 'train', name + '_leftImg8bit.png'), 'w').close()
        names.append(name)
    return sorted(names)


def _read(path):
    with open(path) as f:
        return [line.rstrip('\n') for line in f]


def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    names = _fake_train(str(tmp_path))
    files = tool.main([str(tmp_path), '--num-holdout', '7', '--seed', '3'])
    held, train = _read(files['minival7']), _read(files['train_minus_minival7'])
    assert len(held) == 7 and len(train) == 23
    assert set(held).isdisjoint(train) and sorted(held + train) == names
    assert held == sorted(held) and train == sorted(train)
    assert osp.dirname(files['minival7']) == osp.join(str(tmp_path), 'splits')
    again = tool.main([str(tmp_path), '--num-holdout', '7', '--seed', '3', '--out-dir', str(tmp_path / 'again')])
    assert _read(again['minival7']) == held
    other = tool.main([str(tmp_path), '--num-holdout', '7', '--seed', '4', '--out-dir', str(tmp_path / 'other')])
    assert _read(other['minival7']) != held


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match='no images'):
        tool.main([str(tmp_path)])
    _fake_train(str(tmp_path), n=5)
    with pytest.raises(ValueError, match='--num-holdout 5 must be smaller than the number of images \\(5\\)'):
        tool.main([str(tmp_path), '--num-holdout', '5'])


def test_split_files_load_in_mmseg(cityscapes_root, tmp_path):
    """Three names linked to the real sample: the lists work as mmseg CityscapesDataset ann_files."""
    pytest.importorskip('mmseg', reason='MMSegmentation is not installed')
    from mmseg.datasets import CityscapesDataset
    sample = 'frankfurt/frankfurt_000000_000294'
    for kind, suffix in (('leftImg8bit', '_leftImg8bit.png'), ('gtFine', '_gtFine_labelTrainIds.png')):
        os.makedirs(tmp_path / kind / 'train' / 'frankfurt')
        for k in range(3):
            os.symlink(osp.abspath(osp.join(cityscapes_root, kind, 'val', sample + suffix)),
                       tmp_path / kind / 'train' / f'frankfurt/frankfurt_00000{k}_000294{suffix}')
    files = tool.main([str(tmp_path), '--num-holdout', '1'])
    assert set(files) == {'minival1', 'train_minus_minival1'}
    sets = {}
    for key, n in (('minival1', 1), ('train_minus_minival1', 2)):
        ds = CityscapesDataset(data_root=str(tmp_path), ann_file=osp.join('splits', key + '.txt'), pipeline=[],
                               data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'))
        assert len(ds) == n
        assert all(osp.isfile(ds[i]['img_path']) and osp.isfile(ds[i]['seg_map_path']) for i in range(n))
        sets[key] = {ds[i]['img_path'] for i in range(n)}
    assert sets['minival1'].isdisjoint(sets['train_minus_minival1'])
