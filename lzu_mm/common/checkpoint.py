"""Loading mmengine checkpoints under torch >= 2.6 (``torch.load(weights_only=True)`` by default).

mmengine 0.10.7 saves ``message_hub`` (``HistoryBuffer`` objects holding numpy
arrays) and ``meta`` (numpy scalars) in every checkpoint and loads them with a
plain ``torch.load``, which torch >= 2.6 runs with ``weights_only=True``: the
unpickler rejects those globals and ``--resume`` / ``test.py CHECKPOINT``
fail. Instead of switching the safe unpickler off, this allow-lists exactly
the extra globals those checkpoints contain, and only while mmengine loads a
checkpoint (:func:`mmengine_checkpoint_globals`, entered by every loader of
mmengine's ``CheckpointLoader`` once :func:`allow_mmengine_checkpoints` ran).
``HistoryBuffer.__getstate__`` also pickles its statistics methods as
``getattr(HistoryBuffer, 'min')`` (etc.); inside that scope the unpickler's
``builtins.getattr`` is a restricted version that only returns those methods.
A plain ``torch.load`` outside mmengine's loaders is left exactly as torch
ships it: nothing is added to torch's process-wide safe globals.
"""
import contextlib
import functools
import pickle

import numpy as np
import torch

_SCOPED = '_lzu_mm_mmengine_globals'  # marks a CheckpointLoader scheme already wrapped


def _numpy_globals():
    out = [np.ndarray, np.dtype]
    # numpy < 2 keeps the reconstructors in numpy.core, numpy >= 2 in numpy._core
    try:
        from numpy.core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    out += [_reconstruct, scalar]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtypes by class
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return out


def _history_buffer_getattr(obj, name):
    """``getattr`` for the unpickler, restricted to ``HistoryBuffer``'s statistics methods."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and isinstance(name, str) and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint (only '
                                 'HistoryBuffer statistics methods are)')


def _mmengine_globals() -> list:
    safe = _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        safe += [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]
    except ImportError:  # pragma: no cover - mmengine absent
        pass
    return safe


@contextlib.contextmanager
def mmengine_checkpoint_globals():
    """Context in which ``torch.load(weights_only=True)`` accepts mmengine checkpoints.

    Uses ``torch.serialization.safe_globals`` (torch >= 2.5), so the numpy
    globals, ``HistoryBuffer`` and the restricted ``getattr`` are allowed only
    inside the ``with`` block; any other global still raises
    ``pickle.UnpicklingError``. A no-op on older torch (whose ``torch.load``
    is not ``weights_only`` by default).
    """
    scope = getattr(torch.serialization, 'safe_globals', None)
    if scope is None:  # pragma: no cover - torch < 2.5
        yield
        return
    with scope(_mmengine_globals()):
        yield


def _scoped(loader):

    @functools.wraps(loader)
    def load(*args, **kwargs):
        with mmengine_checkpoint_globals():
            return loader(*args, **kwargs)

    setattr(load, _SCOPED, True)
    return load


def allow_mmengine_checkpoints() -> None:
    """Let mmengine's checkpoint loaders read mmengine checkpoints under torch >= 2.6.

    Re-registers every scheme of ``mmengine.runner.CheckpointLoader`` (local
    files, ``http(s)://``, backends, ...) with ``register_scheme(force=True)``
    so that it runs inside :func:`mmengine_checkpoint_globals`. This covers
    ``Runner.load_checkpoint``, ``Runner.resume``, ``load_from`` and
    ``init_cfg=dict(type='Pretrained')``; ``torch.load`` called directly is
    not affected. Idempotent; a no-op without mmengine.
    """
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:  # pragma: no cover - mmengine absent
        return
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, _SCOPED, False):
            CheckpointLoader.register_scheme(prefix, _scoped(loader), force=True)
