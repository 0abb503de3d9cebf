"""Loading mmengine checkpoints under torch >= 2.6 (``torch.load(weights_only=True)`` by default).

mmengine 0.10.7 saves ``message_hub`` (``HistoryBuffer`` objects holding numpy
arrays) and ``meta`` (numpy scalars) in every checkpoint and loads them with a
plain ``torch.load``, which torch >= 2.6 runs with ``weights_only=True``: the
unpickler rejects those globals and ``--resume`` / ``test.py CHECKPOINT``
fail. Instead of switching the safe unpickler off, this allow-lists exactly
the extra globals those checkpoints contain. ``HistoryBuffer.__getstate__``
also pickles its statistics methods as ``getattr(HistoryBuffer, 'min')``
(etc.); ``builtins.getattr`` is therefore mapped to a restricted version that
only returns those methods.
"""
import pickle

import numpy as np
import torch


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


def allow_mmengine_checkpoints() -> None:
    """Allow-list the globals of mmengine checkpoints for ``torch.load(weights_only=True)``.

    Idempotent; a no-op on torch versions without ``add_safe_globals``.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # pragma: no cover - torch < 2.4
        return
    safe = _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        safe += [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]
    except ImportError:  # pragma: no cover - mmengine absent
        pass
    add(safe)
