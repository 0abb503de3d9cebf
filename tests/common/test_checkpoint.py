"""mmengine checkpoints load under torch >= 2.6's weights_only default, and nothing more does.

The extra globals are allowed only inside mmengine's checkpoint loaders (or
``mmengine_checkpoint_globals()``): a plain ``torch.load`` is untouched.
"""
import os
import pickle

import numpy as np
import pytest
import torch

import lzu_mm.common  # noqa: F401  (scopes the mmengine checkpoint globals to mmengine's loaders)
from lzu_mm.common.checkpoint import mmengine_checkpoint_globals

pytest.importorskip('mmengine')
from mmengine.runner.checkpoint import _load_checkpoint  # noqa: E402


def test_mmengine_checkpoint_round_trip(tmp_path):
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('lzu_ckpt_test')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/loss', 0.25)
    hub.update_info('iter', 3)
    ckpt = dict(meta=dict(seed=np.int64(7), epoch=1, mean=np.array([1.0, 2.0], dtype=np.float32),
                          dtype=np.dtype('float32')),
                state_dict=dict(w=torch.ones(2)), message_hub=hub.state_dict())
    path = os.path.join(tmp_path, 'epoch_1.pth')
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):  # not allowed process-wide
        torch.load(path)  # torch's default: weights_only=True
    assert not any('HistoryBuffer' in repr(g) for g in torch.serialization.get_safe_globals())
    with mmengine_checkpoint_globals():
        assert torch.load(path)['meta']['seed'] == 7
    with pytest.raises(pickle.UnpicklingError):  # the scope ended
        torch.load(path)
    loaded = _load_checkpoint(path, map_location='cpu')  # mmengine's CheckpointLoader: torch.load inside the scope
    assert loaded['meta']['seed'] == 7
    assert np.array_equal(loaded['meta']['mean'], [1.0, 2.0])
    restored = MessageHub.get_instance('lzu_ckpt_test_restored')
    restored.load_state_dict(loaded['message_hub'])
    assert restored.get_scalar('train/loss').current() == 0.25
    assert restored.get_scalar('train/loss').mean() == pytest.approx(0.375)


class Exploit:

    def __reduce__(self):
        return (os.system, ('echo unsafe',))


def test_arbitrary_globals_are_still_rejected(tmp_path):
    path = os.path.join(tmp_path, 'bad.pth')
    torch.save({'x': Exploit()}, path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path, map_location='cpu')


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):

    from mmengine.logging.history_buffer import HistoryBuffer

    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))  # allow-listed class, not a statistics method

    path = os.path.join(tmp_path, 'sneaky.pth')
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path, map_location='cpu')


def test_runner_resumes_its_checkpoint(tmp_path):
    """A real mmengine Runner checkpoint (message hub, numpy meta) resumes with ``resume=True``."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, inputs, mode='tensor'):
            loss = ((self.w - torch.stack(inputs)) ** 2).mean()
            return dict(loss=loss) if mode == 'loss' else [loss]

    def runner(**kwargs):
        return Runner(
            model=Toy(), work_dir=str(tmp_path), train_cfg=dict(by_epoch=False, max_iters=2),
            train_dataloader=dict(dataset=[dict(inputs=torch.ones(1))] * 4,
                                  sampler=dict(type='DefaultSampler', shuffle=False),
                                  batch_size=2, collate_fn=dict(type='pseudo_collate')),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)), **kwargs)

    first = runner()
    first.train()
    resumed = runner(resume=True)
    resumed.load_or_resume()
    assert resumed.iter == 2
    assert torch.equal(resumed.model.w, first.model.w) and first.model.w.item() != 0
    loss = 'train/loss'
    assert resumed.message_hub.get_scalar(loss).current() == first.message_hub.get_scalar(loss).current()
