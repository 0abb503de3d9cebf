"""The fixed-saliency zoom as a pipeline transform core (LZU §3, fixed saliency, §5).

:class:`LZZoomMixin` replaces the image resampling of a framework's ``Resize``
transform by an LZ zoom with a fixed saliency. Everything else of that
``Resize`` stays: the target size (``scale`` / ``scale_factor`` /
``keep_ratio``), and the *uniform* rescaling of boxes, masks, segmentation
maps, intrinsics and keypoints by ``target / original``. Labels therefore stay
in un-warped coordinates; the model unzooms its features with exactly the
recorded warp. The transform records, in ``results['lzu_zoom']``::

    dict(grid=<float32 ndarray [h, w, 2]: the LZ grid, normalised (x, y)>,
         separable=bool, attraction_fwhm=float, anti_crop=bool,
         saliency=<path of the saliency file or None>)

Add ``'lzu_zoom'`` to the ``meta_keys`` of the packing transform so the model
receives it.
"""
from typing import Sequence

import mmcv
import numpy as np
import torch

from lzu_mm.ops import LZWarp, load_saliency


class LZZoomMixin:
    """Turns a ``Resize`` subclass into the fixed-saliency LZ zoom.

    Use as the first base: ``class FixedSaliencyZoom(LZZoomMixin, Resize)``.

    Args:
        saliency: path of the saliency file (the authors' pickled ``(1, 1, h,
            w)`` tensor ``.pkl``, ``.npy`` or ``.pth``), loaded once when the
            transform is built.
        grid_shape: expected ``(h, w)`` of the saliency (= LZ grid shape).
        separable, attraction_fwhm, anti_crop: LZ grid parameters (see
            :func:`lzu_mm.ops.saliency_to_grid`).
        **kwargs: the ``Resize`` arguments (``scale``, ``scale_factor``,
            ``keep_ratio``, ...).

    Raises:
        FileNotFoundError / ValueError: at build time, for a missing file or a
            saliency of the wrong shape or dtype (naming the file and the
            expected shape).
    """

    def __init__(self,
                 saliency: str,
                 grid_shape: Sequence[int],
                 separable: bool = True,
                 attraction_fwhm: float = 13.,
                 anti_crop: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if saliency is None:
            raise ValueError('saliency must be the path of a saliency file, got None')
        self.saliency_path = str(saliency)
        self.grid_shape = tuple(int(v) for v in grid_shape)
        self.warp = LZWarp(load_saliency(saliency, self.grid_shape), separable=separable,
                           attraction_fwhm=attraction_fwhm, anti_crop=anti_crop)
        self._record = dict(grid=self.warp.grid()[0].numpy().astype(np.float32), separable=bool(separable),
                            attraction_fwhm=float(attraction_fwhm), anti_crop=bool(anti_crop),
                            saliency=self.saliency_path)

    def zoom_image(self, img: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
        """Zoom an ``[H, W]`` or ``[H, W, C]`` image to ``out_shape = (h, w)``; keeps dtype (uint8 rounded)."""
        chw = torch.from_numpy(np.ascontiguousarray(img if img.ndim == 3 else img[..., None])).permute(2, 0, 1)
        out = self.warp.zoom(chw[None].float(), out_shape)[0].permute(1, 2, 0).numpy()
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(img.dtype)
        return out if img.ndim == 3 else out[..., 0]

    def _target_size(self, results: dict, h: int, w: int):
        if self.keep_ratio:
            new_w, new_h = mmcv.rescale_size((w, h), results['scale'])
        else:
            new_w, new_h = results['scale']
        return int(new_h), int(new_w)

    def _resize_img(self, results: dict) -> None:
        if results.get('img', None) is None:
            return
        h, w = results['img'].shape[:2]
        new_h, new_w = self._target_size(results, h, w)
        results['img'] = self.zoom_image(results['img'], (new_h, new_w))
        results['img_shape'] = (new_h, new_w)
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio
        results['lzu_zoom'] = dict(self._record)

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', saliency={self.saliency_path!r}, grid_shape={self.grid_shape}, '
                f'separable={self.warp.separable}, attraction_fwhm={self.warp.attraction_fwhm}, '
                f'anti_crop={self.warp.anti_crop})')
