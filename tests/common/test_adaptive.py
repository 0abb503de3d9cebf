"""Online adaptive saliency glue: SequenceSampler, the online loops' checks, CascadeSaliencyHook, BoxSaliency."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.registry import DATA_SAMPLERS, HOOKS, LOOPS

import lzu_mm.common.adaptive as adaptive
from lzu_mm.common.adaptive import BoxSaliency, CascadeSaliencyHook, OnlineTestLoop, SequenceSampler


class Frames:
    """A dataset stand-in: (sid, fid) per sample, in a shuffled order."""

    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def get_data_info(self, index):
        sid, fid = self.frames[index]
        return dict(sid=sid, fid=fid)


#: sequence 'a' 5 frames, 'b' 2, 'c' 3, 'd' 2 (12 samples, shuffled)
FRAMES = [('b', 1), ('a', 3), ('c', 0), ('a', 0), ('d', 1), ('a', 4), ('c', 2), ('b', 0), ('a', 1), ('c', 1),
          ('d', 0), ('a', 2)]


def _sampler(monkeypatch, rank=0, world=1, **kwargs):
    monkeypatch.setattr(adaptive, 'get_dist_info', lambda: (rank, world))
    return DATA_SAMPLERS.build(dict(type='SequenceSampler', dataset=Frames(FRAMES), seed=0, **kwargs))


def test_whole_sequences_per_process_in_frame_order(monkeypatch):
    one = list(_sampler(monkeypatch))
    assert sorted(one) == list(range(12))
    order = [FRAMES[i] for i in one]  # sequences by first appearance, one after another, frames in order
    assert order == [('b', 0), ('b', 1), ('a', 0), ('a', 1), ('a', 2), ('a', 3), ('a', 4), ('c', 0), ('c', 1),
                     ('c', 2), ('d', 0), ('d', 1)]
    parts = [[FRAMES[i] for i in _sampler(monkeypatch, rank, 2)] for rank in (0, 1)]
    assert sorted(parts[0] + parts[1]) == sorted(FRAMES)
    sequences = [{s for s, _ in part} for part in parts]
    assert not sequences[0] & sequences[1]  # never split
    assert sorted(map(len, parts)) == [5, 7]  # the best split of sequences of 5, 3, 2, 2 frames
    for part in parts:
        for s in {s for s, _ in part}:
            assert [f for t, f in part if t == s] == sorted(f for t, f in FRAMES if t == s)


def test_interleave_runs_sequences_side_by_side(monkeypatch):
    order = [FRAMES[i] for i in _sampler(monkeypatch, interleave=2)]
    assert order[:6] == [('b', 0), ('a', 0), ('b', 1), ('a', 1), ('c', 0), ('a', 2)]  # 'c' takes b's slot
    assert len(order) == 12 and all(order.index((s, f)) < order.index((s, f + 1)) for s, f in FRAMES
                                    if (s, f + 1) in FRAMES)
    with pytest.raises(ValueError, match='interleave'):
        _sampler(monkeypatch, interleave=0)
    monkeypatch.setattr(adaptive, 'get_dist_info', lambda: (0, 1))

    class NoFrameIndex(Frames):
        def get_data_info(self, index):
            return dict(sid=0)

    with pytest.raises(ValueError, match=r"sample 0 of NoFrameIndex has no \['fid'\]"):
        SequenceSampler(NoFrameIndex(FRAMES))


def test_online_loop_refuses_a_sampler_that_splits_sequences():
    assert LOOPS.get('OnlineTestLoop') is OnlineTestLoop and LOOPS.get('OnlineValLoop') is adaptive.OnlineValLoop
    loop = OnlineTestLoop.__new__(OnlineTestLoop)
    model = SimpleNamespace(lzu_online_reset=lambda: None)
    loop._runner = SimpleNamespace(model=model)
    loop.dataloader = SimpleNamespace(sampler=object())
    with pytest.raises(ValueError, match=r"test_dataloader.sampler=dict\(type='SequenceSampler'\)"):
        loop._prepare_online()
    loop._runner = SimpleNamespace(model=torch.nn.Linear(1, 1))
    with pytest.raises(TypeError, match='online adaptive saliency'):
        loop._prepare_online()


def test_cascade_hook_switches_and_logs(capsys):
    assert HOOKS.get('CascadeSaliencyHook') is CascadeSaliencyHook
    phases = []
    model = SimpleNamespace(lzu_saliency_phase='ground_truth')
    model.set_saliency_phase = lambda p: (phases.append(p), setattr(model, 'lzu_saliency_phase', p))
    hook = CascadeSaliencyHook(begin_epoch=3)
    for epoch in range(3):
        hook.before_train_epoch(SimpleNamespace(model=model, epoch=epoch))
    assert phases == ['ground_truth', 'ground_truth', 'cascade']
    never = CascadeSaliencyHook(begin_epoch=None)
    never.before_train_epoch(SimpleNamespace(model=model, epoch=5))
    assert phases[-1] == 'ground_truth'
    with pytest.raises(ValueError, match='begin_epoch'):
        CascadeSaliencyHook(begin_epoch=0)
    with pytest.raises(TypeError, match='adaptive saliency phases'):
        hook.before_train_epoch(SimpleNamespace(model=torch.nn.Linear(1, 1), epoch=0))


def test_box_saliency_arguments():
    learned = BoxSaliency((7, 9), bandwidth_scale=16., amplitude_scale=2., learned=True)
    assert [n for n, _ in learned.named_parameters()] == ['bandwidth', 'amplitude']
    with torch.no_grad():
        learned.bandwidth.fill_(-3.)  # |1 + p| * init + 0.1: positive whatever p becomes
    assert float(learned.scales()[0]) == pytest.approx(2 * 16 + 0.1)
    assert list(BoxSaliency((7, 9)).parameters()) == []  # KDE SI adds no parameters (base checkpoints load strictly)
    for kwargs, match in ((dict(alpha=1.5), 'alpha'), (dict(fallback='zero'), 'fallback'),
                          (dict(bandwidth_scale=0.), 'bandwidth_scale'), (dict(fallback='fixed'), 'fixed saliency')):
        with pytest.raises(ValueError, match=match):
            BoxSaliency((7, 9), **kwargs)
