"""Compute a fixed, dataset-wide saliency from training boxes (FOVEA's "KDE SD").

    python tools/saliency/box_kde_saliency.py ANN_FILE OUT [--grid-shape H W]
        [--bandwidth-scale 64] [--uniform-floor W] [--align-corners] [--data-root DIR]
        [--default-image-size W H] [--png PATH]

``ANN_FILE`` is either

* a COCO-format json (COCO, Argoverse-HD): every non-crowd box of
  ``annotations[*].bbox`` (``x, y, w, h``), in the image size given by
  ``images[*].width/height``; or
* an MMDetection3D info file ``.pkl`` (e.g. ``nuscenes_infos_train.pkl``):
  the 2D boxes ``cam_instances[CAM_*][*].bbox`` (``x1, y1, x2, y2``) of every
  camera of every sample in ``data_list``, in the size of the camera image
  (read from the image header under ``--data-root``, else
  ``--default-image-size``, 1600x900 for nuScenes).

``OUT`` is written by suffix: ``.pkl`` (a pickled ``torch.Tensor`` of shape
``(1, 1, h, w)``, the format of the paper authors' released saliency),
``.npy`` or ``.pth``; plus a PNG of the map with its colour bar, in multiples
of a uniform map's value (``--png``, default ``OUT`` with ``.png``). The KDE
maths is :func:`lzu_mm.ops.saliency.kde_box_saliency`.
"""
import argparse
import json
import os.path as osp
import pickle
import sys
import warnings

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from lzu_mm.ops.saliency import kde_box_saliency, save_saliency  # noqa: E402
from lzu_mm.visualization.panels import save_saliency_figure  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is in requirements/runtime.txt

    def tqdm(iterable, **kwargs):
        return iterable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Dataset-wide box KDE saliency (FOVEA KDE SD) for LZU')
    parser.add_argument('ann_file', help='COCO / Argoverse-HD json, or MMDetection3D info .pkl')
    parser.add_argument('out', help='output saliency file (.pkl, .npy or .pth)')
    parser.add_argument('--grid-shape', type=int, nargs=2, default=(31, 51), metavar=('H', 'W'),
                        help='saliency / LZ grid shape (default 31 51, the Argoverse-HD grid)')
    parser.add_argument('--bandwidth-scale', type=float, default=64.,
                        help='Gaussian variance per pixel of box width/height (default 64)')
    parser.add_argument('--uniform-floor', type=float, default=None,
                        help="relative weight of the uniform density added to the box density (default: FOVEA's "
                        'per-box uniform term, h*w/(2*min(h,w)-1)^2, 0.4249 at 31x51)')
    parser.add_argument('--align-corners', action='store_true',
                        help="grid points from the first to the last pixel centre instead of FOVEA's edge to edge")
    parser.add_argument('--data-root', help='root of the images of an MMDetection3D info file (for image sizes)')
    parser.add_argument('--default-image-size', type=int, nargs=2, default=(1600, 900), metavar=('W', 'H'),
                        help='image size when it cannot be read (MMDetection3D info files; default 1600 900)')
    parser.add_argument('--png', help='where to write the PNG (default: OUT with suffix .png)')
    args = parser.parse_args(argv)
    if osp.splitext(args.out)[1].lower() not in ('.pkl', '.npy', '.pth', '.pt'):
        parser.error(f'out must end with .pkl, .npy or .pth, got {args.out!r}')
    return args


def coco_boxes(path):
    """``[N, 4]`` xyxy boxes and ``[N, 2]`` (H, W) image sizes from a COCO-format json."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or 'annotations' not in data or 'images' not in data:
        raise ValueError(f'{path!r} is not a COCO-format json (expected "images" and "annotations")')
    sizes = {img['id']: (img['height'], img['width']) for img in data['images']}
    boxes, shapes = [], []
    for ann in tqdm(data['annotations'], desc='boxes', unit='box'):
        if ann.get('iscrowd', 0):
            continue
        x, y, w, h = ann['bbox']
        boxes.append((x, y, x + w, y + h))
        shapes.append(sizes[ann['image_id']])
    return boxes, shapes


def _read_size(path):
    """(H, W) of an image file: from its header with Pillow, else by decoding it with OpenCV."""
    try:
        from PIL import Image
    except ImportError:
        import cv2
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f'could not read image {path!r}')
        return img.shape[:2]
    with Image.open(path) as im:
        return im.size[1], im.size[0]


def _image_size(img_path, cam, data_root):
    """(H, W) of a camera image of an info file, or None when the file is not found."""
    candidates = [img_path] if osp.isabs(img_path) else []
    if data_root:
        candidates += [osp.join(data_root, 'samples', cam, img_path), osp.join(data_root, img_path)]
    for cand in candidates:
        if osp.isfile(cand):
            return _read_size(cand)
    return None


def mmdet3d_boxes(path, data_root, default_hw):
    """``[N, 4]`` xyxy boxes and ``[N, 2]`` (H, W) image sizes from an MMDetection3D info .pkl."""
    with open(path, 'rb') as f:
        data = pickle.load(f)
    if not isinstance(data, dict) or 'data_list' not in data:
        raise ValueError(f'{path!r} is not an MMDetection3D 1.x info file (expected a dict with "data_list")')
    boxes, shapes, defaulted = [], [], 0
    size_cache = {}
    for info in tqdm(data['data_list'], desc='samples', unit='sample'):
        for cam, img in (info.get('images') or {}).items():
            instances = (info.get('cam_instances') or {}).get(cam, img.get('cam_instances', []))
            if not instances:
                continue
            if img.get('height') and img.get('width'):
                hw = (img['height'], img['width'])
            else:
                key = (cam, img.get('img_path'))
                if key not in size_cache:
                    size_cache[key] = _image_size(img.get('img_path', ''), cam, data_root)
                hw = size_cache[key]
                if hw is None:
                    hw, defaulted = default_hw, defaulted + 1
            for inst in instances:
                boxes.append(tuple(inst['bbox']))
                shapes.append(hw)
    if defaulted:
        warnings.warn(f'{defaulted} camera images not found (data_root={data_root!r}); assumed size '
                      f'{default_hw[1]}x{default_hw[0]} (--default-image-size)')
    return boxes, shapes


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.ann_file):
        raise FileNotFoundError(f'annotation file {args.ann_file!r} does not exist')
    default_hw = (args.default_image_size[1], args.default_image_size[0])
    if args.ann_file.endswith('.json'):
        boxes, shapes = coco_boxes(args.ann_file)
    else:
        boxes, shapes = mmdet3d_boxes(args.ann_file, args.data_root, default_hw)
    saliency = kde_box_saliency(np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                np.asarray(shapes, dtype=np.float64).reshape(-1, 2), tuple(args.grid_shape),
                                bandwidth_scale=args.bandwidth_scale, uniform_floor=args.uniform_floor,
                                align_corners=args.align_corners)
    png = args.png or osp.splitext(args.out)[0] + '.png'
    save_saliency(saliency, args.out)
    save_saliency_figure(saliency, png,
                         title=f'{osp.basename(args.out)}: {len(boxes)} boxes of {osp.basename(args.ann_file)}')
    print(f'{len(boxes)} boxes -> saliency {tuple(saliency.shape)} written to {args.out} and {png}')
    return saliency


if __name__ == '__main__':
    main()
