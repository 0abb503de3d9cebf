"""Write the LZU version of an MMDetection / MMSegmentation / MMDetection3D config.

    python tools/misc/lzu_config.py BASE_CONFIG --saliency FILE|uniform [--grid-shape H W]
        [--attraction-fwhm F] [--separable/--no-separable] [--anti-crop/--no-anti-crop] [--model-side]
        -o NEW_CONFIG

``BASE_CONFIG`` is a config file or a package path (``mmdet::atss/atss_r50_fpn_1x_coco.py``,
``mmseg::...``, ``mmdet3d::...``). The new config inherits it (``_base_``) and
changes only the model type (``type='LZU', base=<old type>``), the last resize
of every pipeline (-> the fixed-saliency zoom) and the packing ``meta_keys``;
with ``--model-side`` the pipelines stay and the model zooms
(``model.lzu``). ``--saliency`` takes the files ``tools/saliency/*.py``
write (``--grid-shape`` defaults to the file's shape). What cannot be
converted is refused with a message naming the transform or setting
(:mod:`lzu_mm.common.convert`). Then ``tools/train.py NEW_CONFIG`` /
``tools/test.py NEW_CONFIG CKPT`` run it as any config.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from lzu_mm.common.convert import convert_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write the LZU version of an OpenMMLab config')
    parser.add_argument('config', help="base config: a file, or 'mmdet::...', 'mmseg::...', 'mmdet3d::...'")
    parser.add_argument('--saliency', required=True, help="saliency file (.pkl / .npy / .pth) or 'uniform'")
    parser.add_argument('--grid-shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="LZ grid shape (default: the saliency file's; required with 'uniform')")
    parser.add_argument('--attraction-fwhm', type=float, help='attraction kernel FWHM in grid cells (default 13)')
    parser.add_argument('--separable', action=argparse.BooleanOptionalAction, default=None,
                        help='separable LZ warp (default: yes)')
    parser.add_argument('--anti-crop', action=argparse.BooleanOptionalAction, default=None,
                        help='anti-crop reflection of the saliency (default: yes)')
    parser.add_argument('--model-side', action='store_true',
                        help='zoom in the model (model.lzu) and keep the pipelines (needed for crops after the '
                        "resize and mmseg's sliding-window inference)")
    parser.add_argument('-o', '--out', required=True, help='path of the new config')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        convert_config(args.config, args.saliency, args.grid_shape, attraction_fwhm=args.attraction_fwhm,
                       separable=args.separable, anti_crop=args.anti_crop, model_side=args.model_side, out=args.out)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        sys.exit(f'lzu_config: {exc}')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
