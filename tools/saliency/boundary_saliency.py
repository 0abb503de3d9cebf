"""Fixed saliency for segmentation: ground-truth semantic boundaries averaged over a training set.

    python tools/saliency/boundary_saliency.py DATA_ROOT OUT [--split train] [--ann-file FILE]
        [--grid-shape 32 32] [--crop-size S] [--seg-map-suffix _gtFine_labelTrainIds.png]
        [--ignore-index 255] [--png PATH]

LZU §5.2 (after Marin et al., ICCV 2019, "Efficient segmentation: learning
downsampling near semantic boundaries"): the fixed saliency of the Cityscapes
experiment is the average, over the training set, of the ground-truth
semantic boundaries, taken after the same centred square crop as the model's
input. For each label map (``gtFine/<split>/**/*<seg-map-suffix>``, or the
names listed in ``--ann-file`` as for mmseg's dataset ``ann_file``):

1. centre-crop the largest square (or ``--crop-size``), as
   :class:`lzu_mm.mmseg.CenterSquareCrop` does;
2. boundary pixels: pixels whose right or lower 4-neighbour has a different
   label, both labels not ``--ignore-index`` (both pixels of such a pair are
   marked);
3. area-average the boundary mask onto the saliency grid (OpenCV
   ``INTER_AREA``): each grid cell holds the fraction of its pixels on a
   boundary.

The per-image maps are averaged and normalised to sum 1. ``OUT`` is written by
suffix: ``.pkl`` (a pickled ``torch.Tensor`` of shape ``(1, 1, h, w)``, the
format of the paper authors' released saliency), ``.npy`` or ``.pth``; plus a
PNG of the map with its colour bar, in multiples of a uniform map's value
(``--png``, default ``OUT`` with ``.png``).

Raises ``FileNotFoundError`` when no label map is found and ``ValueError``
when a crop is larger than a label map or no boundary pixel is found.
"""
import argparse
import glob
import os
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from lzu_mm.ops.saliency import load_saliency, save_saliency  # noqa: E402
from lzu_mm.visualization.panels import save_saliency_figure  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is in requirements/runtime.txt

    def tqdm(iterable, **kwargs):
        return iterable


SUFFIXES = ('.pkl', '.npy', '.pth', '.pt')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Fixed LZU saliency from ground-truth semantic boundaries')
    parser.add_argument('data_root', help='Cityscapes root (with gtFine/<split>/<city>/...)')
    parser.add_argument('out', help='output saliency file (.pkl, .npy or .pth)')
    parser.add_argument('--split', default='train', help='gtFine sub-folder to read (default train)')
    parser.add_argument('--ann-file', help='optional list of names (mmseg ann_file, e.g. the hold-out split\'s '
                        'train list), relative to DATA_ROOT or absolute; default: every label map of the split')
    parser.add_argument('--grid-shape', type=int, nargs=2, default=(32, 32), metavar=('H', 'W'),
                        help='saliency / LZ grid shape (default 32 32, see configs/lzu_pspnet)')
    parser.add_argument('--crop-size', type=int, help='side of the centred square crop in pixels (default: the '
                        'largest square, 1024 for Cityscapes)')
    parser.add_argument('--seg-map-suffix', default='_gtFine_labelTrainIds.png', help='label map suffix')
    parser.add_argument('--ignore-index', type=int, default=255, help='label not counted for boundaries')
    parser.add_argument('--png', help='where to write the PNG (default: OUT with suffix .png)')
    args = parser.parse_args(argv)
    if osp.splitext(args.out)[1].lower() not in SUFFIXES:
        parser.error(f'out must end with one of {SUFFIXES}, got {args.out!r}')
    if min(args.grid_shape) < 2:
        parser.error(f'--grid-shape must be at least 2 2, got {args.grid_shape}')
    if args.crop_size is not None and args.crop_size <= 0:
        parser.error(f'--crop-size must be positive, got {args.crop_size}')
    return args


def label_maps(data_root, split, seg_map_suffix, ann_file=None):
    """Sorted paths of the label maps of ``gtFine/<split>`` (all, or the names in ``ann_file``)."""
    seg_dir = osp.join(data_root, 'gtFine', split)
    if ann_file is not None:
        ann = ann_file if osp.isabs(ann_file) or osp.isfile(ann_file) else osp.join(data_root, ann_file)
        if not osp.isfile(ann):
            raise FileNotFoundError(f'--ann-file {ann!r} does not exist')
        with open(ann) as f:
            names = [line.strip() for line in f if line.strip()]
        paths = [osp.join(seg_dir, name + seg_map_suffix) for name in names]
        missing = [p for p in paths if not osp.isfile(p)]
        if missing:
            raise FileNotFoundError(f'{len(missing)} label maps listed in {ann!r} are missing, e.g. {missing[0]!r}')
    else:
        paths = sorted(glob.glob(osp.join(seg_dir, '**', '*' + seg_map_suffix), recursive=True))
    if not paths:
        present = sorted(d for d in os.listdir(osp.join(data_root, 'gtFine'))) if osp.isdir(
            osp.join(data_root, 'gtFine')) else []
        hint = f' (splits present: {", ".join(present)}; choose one with --split)' if present else ''
        raise FileNotFoundError(f'no label maps *{seg_map_suffix} found under {seg_dir!r}{hint}')
    return paths


def center_square(label: np.ndarray, crop_size=None, name='label map') -> np.ndarray:
    """The centred ``crop_size`` square of ``label`` (the largest one if None); same box as CenterSquareCrop."""
    h, w = label.shape[:2]
    side = crop_size or min(h, w)
    if side > h or side > w:
        raise ValueError(f'crop size {side} is larger than {name} ({h}x{w} pixels)')
    y1, x1 = int(round((h - side) / 2.)), int(round((w - side) / 2.))
    return label[y1:y1 + side, x1:x1 + side]


def boundary_mask(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """``[H, W]`` bool: pixels with a 4-neighbour of another label (neither label ``ignore_index``)."""
    valid = label != ignore_index
    mask = np.zeros(label.shape, dtype=bool)
    horiz = (label[:, 1:] != label[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    vert = (label[1:] != label[:-1]) & valid[1:] & valid[:-1]
    mask[:, 1:] |= horiz
    mask[:, :-1] |= horiz
    mask[1:] |= vert
    mask[:-1] |= vert
    return mask


def boundary_saliency(paths, grid_shape, crop_size=None, ignore_index=255) -> torch.Tensor:
    """Average boundary density on the grid over ``paths``: ``(1, 1, h, w)`` float32 summing to 1."""
    import cv2
    gh, gw = grid_shape
    total = np.zeros((gh, gw), dtype=np.float64)
    for path in tqdm(paths, desc='label maps', unit='img'):
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if label is None:
            raise ValueError(f'could not read label map {path!r}')
        if label.ndim != 2:
            raise ValueError(f'label map {path!r} must be single-channel, got shape {label.shape}')
        mask = boundary_mask(center_square(label, crop_size, f'label map {path!r}'), ignore_index)
        total += cv2.resize(mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)
    if total.sum() <= 0:
        raise ValueError(f'no semantic boundary found in {len(paths)} label maps; cannot build a saliency')
    return torch.from_numpy(total / total.sum()).float().reshape(1, 1, gh, gw)


def main(argv=None):
    args = parse_args(argv)
    paths = label_maps(args.data_root, args.split, args.seg_map_suffix, args.ann_file)
    saliency = boundary_saliency(paths, tuple(args.grid_shape), args.crop_size, args.ignore_index)
    png = args.png or osp.splitext(args.out)[0] + '.png'
    save_saliency(saliency, args.out)
    save_saliency_figure(saliency, png, title=f'{osp.basename(args.out)}: boundaries of {len(paths)} label maps')
    load_saliency(args.out, tuple(args.grid_shape))  # the file reads back as the configs will read it
    print(f'{len(paths)} label maps -> saliency {tuple(saliency.shape)} written to {args.out} and {png}')
    return saliency


if __name__ == '__main__':
    main()
