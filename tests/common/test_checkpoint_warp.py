"""Self-contained LZU checkpoints (lzu_mm.common.checkpoint_warp): the saliency travels with the weights.

Unit level, framework-free: a toy LZU model (LZUMixin on an identity feature extractor) with a model-side warp
from a non-uniform saliency file. The per-framework acceptance tests (tools/train.py checkpoint, file removed,
the frameworks' inference APIs) are tests/{mmdet,mmseg,mmdet3d}/test_inference_api.py.
"""
import os
import pickle
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from torch import nn

from lzu_mm.common import LZUMixin
from lzu_mm.common.checkpoint_warp import (LZUCheckpointHook, RECORD_KEY, check_config_warp, clear_checkpoint_warps,
                                           config_saliency_sites, read_checkpoint_warps, register_checkpoint_warps,
                                           warp_record)
from lzu_mm.ops import LZWarp, load_saliency
from tests.conftest import bump_saliency

GRID = (6, 9)


def bump(centre=(0.3, 0.7), sigma=0.1):
    return bump_saliency(GRID, centre, sigma)


def write(saliency, path):
    with open(path, 'wb') as f:
        pickle.dump(saliency, f)
    return str(path)


class Features(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def extract_feat(self, inputs):
        return self.conv(inputs)


class LZUToy(LZUMixin, Features):

    def __init__(self, lzu):
        super().__init__()
        self.init_lzu(lzu)


@pytest.fixture(autouse=True)
def _fresh_registry():
    clear_checkpoint_warps()
    yield
    clear_checkpoint_warps()


def lzu_cfg(path, **kw):
    return dict(saliency=path, grid_shape=GRID, separable=True, attraction_fwhm=4., anti_crop=True, **kw)


def toy_cfg(path):
    """A config with the saliency in a pipeline zoom, in model.lzu and top-level (as the repo's configs)."""
    zoom = dict(type='FixedSaliencyZoom', scale=(64, 48), keep_ratio=True, **lzu_cfg(path))
    return Config(dict(lzu_zoom=lzu_cfg(path), model=dict(type='LZUToy', lzu=lzu_cfg(path)),
                       test_dataloader=dict(dataset=dict(pipeline=[dict(type='LoadImageFromFile'), zoom])),
                       uniform=dict(saliency='uniform', grid_shape=GRID)))


def saved_checkpoint(tmp_path, path):
    """What mmengine's Runner writes, with LZUCheckpointHook: returns the checkpoint file."""
    model = LZUToy(lzu_cfg(path))
    from mmengine.runner.checkpoint import get_state_dict, weights_to_cpu
    checkpoint = dict(meta=dict(epoch=1), state_dict=weights_to_cpu(get_state_dict(model)))
    LZUCheckpointHook().before_save_checkpoint(SimpleNamespace(cfg=toy_cfg(path)), checkpoint)
    out = str(tmp_path / 'epoch_1.pth')
    torch.save(checkpoint, out)
    return out, model


def test_record_lists_every_saliency_use_and_survives_weights_only_load(tmp_path):
    path = write(bump(), tmp_path / 'sal.pkl')
    sites = config_saliency_sites(toy_cfg(path))
    assert sorted(s['where'] for s in sites) == ['lzu_zoom', 'model.lzu', 'test_dataloader.dataset.pipeline.1']
    assert all(s['attraction_fwhm'] == 4. and s['grid_shape'] == GRID for s in sites)
    ckpt_path, _ = saved_checkpoint(tmp_path, path)
    loaded = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    record = loaded['meta'][RECORD_KEY]
    assert list(record['saliency']) == [path] and torch.equal(record['saliency'][path], bump())
    # the same record in the state dict's root metadata: what reaches Module._load_from_state_dict
    assert loaded['state_dict']._metadata[''][RECORD_KEY]['saliency'][path].shape == (1, 1) + GRID
    assert read_checkpoint_warps(ckpt_path)['sites'] == record['sites']
    assert warp_record(Config(dict(model=dict(lzu=dict(saliency='uniform', grid_shape=GRID))))) is None


def test_model_built_without_the_file_gets_its_warp_from_the_checkpoint(tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint
    path = write(bump(), tmp_path / 'sal.pkl')
    ckpt_path, trained = saved_checkpoint(tmp_path, path)
    os.remove(path)
    model = LZUToy(lzu_cfg(path))  # the file is gone: the warp waits for the checkpoint
    x = torch.rand(1, 3, 24, 32)
    with pytest.raises(FileNotFoundError, match='no LZU checkpoint loaded into the model stores it'):
        model.extract_feat(x)
    load_checkpoint(model, ckpt_path, map_location='cpu')  # mmengine's path: init_detector / init_model
    expected = LZWarp(bump(), separable=True, attraction_fwhm=4., anti_crop=True)
    assert torch.allclose(model.lzu_warp.grid(), expected.grid())
    assert not torch.allclose(expected.grid(), LZWarp(load_saliency(torch.ones(1, 1, *GRID))).grid(), atol=1e-2)
    assert torch.allclose(model.extract_feat(x), trained.extract_feat(x))
    # the pipeline side: the missing file now resolves to the checkpoint's map (registry keyed by the path)
    assert torch.equal(load_saliency(path, GRID), bump())
    clear_checkpoint_warps()
    with pytest.raises(FileNotFoundError, match='no loaded LZU checkpoint carries it'):
        load_saliency(path, GRID)
    # plain torch load_state_dict carries the metadata too
    model = LZUToy(lzu_cfg(path))
    model.load_state_dict(torch.load(ckpt_path, weights_only=True)['state_dict'])
    assert torch.allclose(model.lzu_warp.grid(), expected.grid())


def test_checkpoint_without_the_saliency_keeps_a_clear_error(tmp_path):
    path = write(bump(), tmp_path / 'sal.pkl')
    ckpt_path, _ = saved_checkpoint(tmp_path, path)
    other = str(tmp_path / 'other.pkl')
    model = LZUToy(lzu_cfg(other))
    with pytest.raises(FileNotFoundError, match='other.pkl'):
        model.load_state_dict(torch.load(ckpt_path, weights_only=True)['state_dict'])


def test_mismatches_are_warned_and_the_config_wins(tmp_path):
    path = write(bump(), tmp_path / 'sal.pkl')
    ckpt_path, _ = saved_checkpoint(tmp_path, path)
    write(bump(centre=(0.8, 0.2)), path)  # the file on disk changed since training
    with pytest.warns(UserWarning, match='differs from the saliency LZU checkpoint .* was trained with'):
        register_checkpoint_warps(ckpt_path)
    assert torch.equal(load_saliency(path, GRID), bump(centre=(0.8, 0.2)))  # the file is used
    with pytest.warns(UserWarning, match='LZ parameters for saliency .* differ'):
        check_config_warp(path, GRID, 'FixedSaliencyZoom', separable=True, attraction_fwhm=10., anti_crop=True)
    with pytest.warns(UserWarning, match='was trained with'):
        check_config_warp(write(bump(), tmp_path / 'else.pkl'), GRID, 'FixedSaliencyZoom')
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_config_warp(path, GRID, 'FixedSaliencyZoom', separable=True, attraction_fwhm=4., anti_crop=True)


def test_a_relocated_config_path_resolves_by_unique_file_name(tmp_path):
    path = write(bump(), tmp_path / 'kde.pkl')
    ckpt_path, _ = saved_checkpoint(tmp_path, path)
    os.remove(path)
    register_checkpoint_warps(ckpt_path)
    with pytest.warns(UserWarning, match='the same file name'):
        assert torch.equal(load_saliency('data/elsewhere/kde.pkl', GRID), bump())
    with pytest.raises(FileNotFoundError):
        load_saliency('data/elsewhere/other.pkl', GRID)


def test_an_unreadable_unused_saliency_does_not_stop_training(tmp_path):
    path = write(bump(), tmp_path / 'sal.pkl')
    cfg = toy_cfg(path)
    cfg.lzu_zoom.saliency = str(tmp_path / 'gone.pkl')  # top-level entry that no transform uses
    with pytest.warns(UserWarning, match='gone.pkl.*not stored in the checkpoint'):
        record = warp_record(cfg)
    assert list(record['saliency']) == [path] and {s['where'] for s in record['sites']} == {
        'model.lzu', 'test_dataloader.dataset.pipeline.1'}


def test_training_with_a_missing_model_side_saliency_fails_before_the_first_iteration(tmp_path):
    model = LZUToy(lzu_cfg(str(tmp_path / 'gone.pkl')))
    with pytest.raises(FileNotFoundError, match='gone.pkl.*load_from'):
        LZUCheckpointHook().before_train(SimpleNamespace(model=model))
    LZUCheckpointHook().before_train(SimpleNamespace(model=LZUToy(lzu_cfg(write(bump(), tmp_path / 'sal.pkl')))))
