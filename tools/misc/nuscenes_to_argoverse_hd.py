"""Build a small Argoverse-HD-format detection set from nuScenes camera images (no Argoverse-HD sample exists).

    python tools/misc/nuscenes_to_argoverse_hd.py NUSCENES_ROOT OUT_ROOT [--ann-file nuscenes_infos_mini.pkl]
        [--copy]

Reads an MMDetection3D nuScenes info file (``NUSCENES_ROOT/--ann-file``) and
writes, under ``OUT_ROOT``, the layout the Argoverse-HD configs read
(``configs/lzu_retinanet/_base_/argoverse-hd_detection.py``)::

    OUT_ROOT/Argoverse-1.1/tracking/val/<log>/ring_front_center/<fid>_<camera>.jpg   (symlinks, or --copy)
    OUT_ROOT/Argoverse-HD/annotations/{train,val}.json                               (the same frames in both)

Every camera image of every sample is a frame; the frames of one nuScenes log
(the image name's prefix, e.g. ``n015-2018-07-24-11-22-45``) form one
sequence, numbered in info-file order (``fid``). The annotations are the
images' ``cam_instances`` 2D boxes (``x1, y1, x2, y2`` clipped to the image),
the nuScenes classes mapped to the 8 Argoverse-HD classes (traffic cones and
barriers have no counterpart and are dropped); the json is COCO plus
``sequences``, ``seq_dirs`` and per-image ``name``, ``sid``, ``fid``. For
smoke runs and tests only: these are not Argoverse-HD's images or statistics.

Raises ``FileNotFoundError`` for a missing info file or image.
"""
import argparse
import json
import os
import os.path as osp
import pickle
import shutil
from typing import Optional

#: Argoverse-HD's 8 classes (category ids 0-7), in its order.
ARGOVERSE_HD_CLASSES = ('person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck', 'traffic_light', 'stop_sign')
#: nuScenes detection classes -> Argoverse-HD classes (traffic_cone and barrier have no counterpart).
NUSCENES_TO_ARGOVERSE = {
    'pedestrian': 'person',
    'bicycle': 'bicycle',
    'car': 'car',
    'motorcycle': 'motorcycle',
    'bus': 'bus',
    'truck': 'truck',
    'trailer': 'truck',
    'construction_vehicle': 'truck',
}
#: nuScenes cameras, in the order their images become frames of a sample.
CAMERAS = ('CAM_FRONT_LEFT', 'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_BACK_RIGHT', 'CAM_BACK', 'CAM_BACK_LEFT')
#: ``data_prefix.img`` of the Argoverse-HD configs: the json's ``seq_dirs`` are relative to it.
IMG_PREFIX = 'Argoverse-1.1/tracking/'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Argoverse-HD-format set from nuScenes camera images')
    parser.add_argument('nuscenes_root', help='nuScenes folder (samples/CAM_*/..., the info file)')
    parser.add_argument('out_root', help='output folder (the Argoverse-HD data_root)')
    parser.add_argument('--ann-file', default='nuscenes_infos_mini.pkl',
                        help='MMDetection3D info file, relative to NUSCENES_ROOT (default nuscenes_infos_mini.pkl)')
    parser.add_argument('--copy', action='store_true', help='copy the images instead of symlinking them')
    return parser.parse_args(argv)


def _image_size(path: str):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f'cannot read image {path!r}')
    return img.shape[1], img.shape[0]


def build_argoverse_hd_from_nuscenes(nuscenes_root: str, out_root: str, ann_file: str = 'nuscenes_infos_mini.pkl',
                                     copy: bool = False, log: Optional[callable] = None) -> dict:
    """Write the Argoverse-HD-format set (see the module docstring); returns its paths and counts.

    Returns:
        ``dict(root, train, val, img_prefix, num_boxes, num_images)`` (paths
        absolute).
    """
    info_path = osp.join(nuscenes_root, ann_file)
    if not osp.isfile(info_path):
        raise FileNotFoundError(f'nuScenes info file {info_path!r} does not exist')
    with open(info_path, 'rb') as f:
        infos = pickle.load(f)
    label_names = {v: k for k, v in infos['metainfo']['categories'].items()}
    out_root = osp.abspath(out_root)
    sequences, seq_dirs, images, annotations = [], [], [], []
    for info in infos['data_list']:
        for cam in CAMERAS:
            if cam not in info['images']:
                continue
            src = osp.abspath(osp.join(nuscenes_root, 'samples', cam, info['images'][cam]['img_path']))
            if not osp.isfile(src):
                raise FileNotFoundError(f'nuScenes image {src!r} (listed in {info_path!r}) does not exist')
            seq = osp.basename(src).split('__')[0].split('+')[0]  # the log, e.g. n015-2018-07-24-11-22-45
            if seq not in sequences:
                sequences.append(seq)
                seq_dirs.append(f'val/{seq}/ring_front_center')
            sid = sequences.index(seq)
            fid = sum(1 for im in images if im['sid'] == sid)
            img_dir = osp.join(out_root, IMG_PREFIX, seq_dirs[sid])
            os.makedirs(img_dir, exist_ok=True)
            name = f'{fid:06d}_{cam}.jpg'
            dst = osp.join(img_dir, name)
            if osp.lexists(dst):
                os.remove(dst)
            (shutil.copyfile if copy else os.symlink)(src, dst)
            width, height = _image_size(src)
            image_id = len(images)
            images.append(dict(id=image_id, name=name, sid=sid, fid=fid, width=width, height=height))
            for inst in info.get('cam_instances', {}).get(cam, []):
                cls = NUSCENES_TO_ARGOVERSE.get(label_names[inst['bbox_label']])
                if cls is None:
                    continue
                x1, y1, x2, y2 = (min(max(float(v), 0.), lim) for v, lim in zip(inst['bbox'], (width, height) * 2))
                if x2 - x1 < 1 or y2 - y1 < 1:
                    continue
                annotations.append(
                    dict(id=len(annotations), image_id=image_id, category_id=ARGOVERSE_HD_CLASSES.index(cls),
                         bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0, ignore=0, track=0))
    ann = dict(categories=[dict(id=i, name=n) for i, n in enumerate(ARGOVERSE_HD_CLASSES)], images=images,
               annotations=annotations, sequences=sequences, seq_dirs=seq_dirs, n_images=len(images))
    ann_dir = osp.join(out_root, 'Argoverse-HD', 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    for split in ('train', 'val'):  # the same frames serve as both splits
        with open(osp.join(ann_dir, f'{split}.json'), 'w') as f:
            json.dump(ann, f)
    out = dict(root=out_root, train=osp.join(ann_dir, 'train.json'), val=osp.join(ann_dir, 'val.json'),
               img_prefix=IMG_PREFIX, num_boxes=len(annotations), num_images=len(images))
    (log or print)(f'{len(images)} images ({len(sequences)} sequences), {len(annotations)} boxes -> {out_root} '
                   '(Argoverse-HD/annotations/{train,val}.json)')
    return out


def main(argv=None):
    args = parse_args(argv)
    return build_argoverse_hd_from_nuscenes(args.nuscenes_root, args.out_root, args.ann_file, args.copy)


if __name__ == '__main__':
    main()
