"""Loading fixed saliency maps from files (pure torch + numpy)."""
import os
import os.path as osp
import pickle
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ._validate import check_saliency, check_shape_2d

SALIENCY_SUFFIXES = ('.pkl', '.npy', '.pth', '.pt')


def uniform_saliency(grid_shape: Sequence[int]) -> Tensor:
    """A uniform ``[1, 1, h, w]`` saliency summing to 1 (its LZ grid is the identity)."""
    h, w = check_shape_2d(grid_shape, 'grid_shape')
    return torch.full((1, 1, h, w), 1.0 / (h * w))


def load_saliency(source: Union[str, os.PathLike, Tensor, np.ndarray],
                  grid_shape: Optional[Sequence[int]] = None) -> Tensor:
    """Load a fixed saliency map and check it.

    Accepted files: the paper authors' format -- a pickled ``torch.Tensor`` of
    shape ``(1, 1, h, w)`` (``.pkl``, e.g. their released
    ``nuscenes_fixed_saliency.pkl``) -- a NumPy ``.npy`` array, or a
    ``torch.save`` file (``.pth`` / ``.pt``) holding a tensor. Shapes
    ``(h, w)``, ``(1, h, w)`` and ``(1, 1, h, w)`` are accepted.

    Args:
        source: path to the file, or the map itself (tensor / array).
        grid_shape: expected ``(h, w)``; checked when given.

    Returns:
        ``[1, 1, h, w]`` float32 CPU tensor.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, unreadable content, wrong shape or dtype,
            NaN/Inf, negative values, all zeros, or a shape different from
            ``grid_shape``. The message names the file and the expected shape.
    """
    name = 'saliency'
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = f'saliency file {path!r}'
        if not osp.isfile(path):
            raise FileNotFoundError(f'{name} does not exist')
        suffix = osp.splitext(path)[1].lower()
        if suffix not in SALIENCY_SUFFIXES:
            raise ValueError(f'{name}: unknown suffix {suffix!r}, expected one of {SALIENCY_SUFFIXES}')
        try:
            if suffix == '.npy':
                data = np.load(path, allow_pickle=False)
            elif suffix == '.pkl':
                with open(path, 'rb') as f:
                    data = pickle.load(f)
            else:
                data = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f'{name} could not be read: {exc}') from exc
    else:
        data = source
    if isinstance(data, np.ndarray):
        if data.dtype.kind != 'f':
            raise ValueError(f'{name} must hold floating-point values, got dtype {data.dtype}')
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, Tensor):
        raise ValueError(f'{name} must hold a tensor or array of shape (1, 1, h, w), got {type(data).__name__}')
    if not data.is_floating_point():
        raise ValueError(f'{name} must hold floating-point values, got dtype {data.dtype}')
    if data.dim() in (2, 3) and all(s == 1 for s in data.shape[:-2]):
        data = data.reshape(1, 1, *data.shape[-2:])
    if data.dim() != 4 or data.shape[:2] != (1, 1):
        raise ValueError(f'{name} must have shape (1, 1, h, w), got {tuple(data.shape)}')
    if grid_shape is not None:
        expected = check_shape_2d(grid_shape, 'grid_shape')
        if tuple(data.shape[-2:]) != expected:
            raise ValueError(f'{name} has grid shape {tuple(data.shape[-2:])} but the config expects grid_shape '
                             f'{expected}, i.e. a saliency of shape (1, 1, {expected[0]}, {expected[1]})')
    data = data.detach().to('cpu', torch.float32)
    try:
        check_saliency(data, name)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return data
