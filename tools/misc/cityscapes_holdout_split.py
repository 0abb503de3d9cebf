"""Hold out a mini-validation split from Cityscapes train (LZU §5.2 protocol).

    python tools/misc/cityscapes_holdout_split.py DATA_ROOT [--num-holdout 500] [--seed 0]
        [--split train] [--out-dir DATA_ROOT/splits] [--img-suffix _leftImg8bit.png]

The paper trains on the training set minus 500 held-out images, validates on
those 500 at 10 equally spaced points of the schedule, and evaluates the best
checkpoint on the official val set. This tool lists
``leftImg8bit/<split>/<city>/<name><img-suffix>``, sorts the names, and draws
``--num-holdout`` of them with ``random.Random(seed)`` (deterministic for a
given file list and seed). It writes two mmseg ``ann_file`` lists (one name
per line, ``<city>/<name>`` without the suffix, relative to
``data_prefix.img_path``), sorted:

* ``<out-dir>/minival<N>.txt`` -- the held-out images (validation);
* ``<out-dir>/train_minus_minival<N>.txt`` -- the rest (training).

Raises ``FileNotFoundError`` when no image is found and ``ValueError`` when
``--num-holdout`` leaves no training image.
"""
import argparse
import glob
import os
import os.path as osp
import random


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Deterministic Cityscapes mini-val hold-out split')
    parser.add_argument('data_root', help='Cityscapes root (with leftImg8bit/<split>/<city>/...)')
    parser.add_argument('--num-holdout', type=int, default=500, help='images held out (default 500, the paper)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--split', default='train', help='leftImg8bit sub-folder to split (default train)')
    parser.add_argument('--out-dir', help='where to write the lists (default DATA_ROOT/splits)')
    parser.add_argument('--img-suffix', default='_leftImg8bit.png', help='image suffix (mmseg img_suffix)')
    args = parser.parse_args(argv)
    if args.num_holdout <= 0:
        parser.error(f'--num-holdout must be positive, got {args.num_holdout}')
    return args


def list_names(data_root, split='train', img_suffix='_leftImg8bit.png'):
    """Sorted ``<city>/<name>`` of the images of ``leftImg8bit/<split>`` (suffix removed)."""
    img_dir = osp.join(data_root, 'leftImg8bit', split)
    paths = glob.glob(osp.join(img_dir, '**', '*' + img_suffix), recursive=True)
    if not paths:
        raise FileNotFoundError(f'no images *{img_suffix} found under {img_dir!r}')
    return sorted(osp.relpath(p, img_dir)[:-len(img_suffix)].replace(os.sep, '/') for p in paths)


def holdout_split(names, num_holdout, seed=0):
    """``(train, holdout)``: sorted lists; ``holdout`` = ``num_holdout`` names drawn with ``random.Random(seed)``."""
    names = sorted(names)
    if num_holdout >= len(names):
        raise ValueError(f'--num-holdout {num_holdout} must be smaller than the number of images ({len(names)})')
    held = set(random.Random(seed).sample(names, num_holdout))
    return [n for n in names if n not in held], sorted(held)


def main(argv=None):
    args = parse_args(argv)
    names = list_names(args.data_root, args.split, args.img_suffix)
    train, held = holdout_split(names, args.num_holdout, args.seed)
    out_dir = args.out_dir or osp.join(args.data_root, 'splits')
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    for stem, lines in ((f'minival{args.num_holdout}', held), (f'train_minus_minival{args.num_holdout}', train)):
        path = osp.join(out_dir, stem + '.txt')
        with open(path, 'w') as f:
            f.writelines(line + '\n' for line in lines)
        files[stem] = path
    print(f'{len(names)} images of {args.split}: {len(train)} for training -> {files[stem]}, '
          f'{len(held)} held out (seed {args.seed}) -> {files["minival%d" % args.num_holdout]}')
    return files


if __name__ == '__main__':
    main()
