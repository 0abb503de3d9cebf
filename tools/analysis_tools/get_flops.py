"""FLOPs of uniform and LZU segmentation models, zoom and unzoom included (LZU Figure 7).

    python tools/analysis_tools/get_flops.py CONFIG [CONFIG ...] [--input-size 1024 1024]
        [--saliency PATH|uniform] [--cfg-options k=v ...]

For each MMSegmentation config, builds the model (no weights) and counts, with
mmengine's jit-trace complexity analysis (``mmengine.analysis.FlopAnalyzer``;
1 FLOP = 1 multiply-add, fvcore's convention), one forward pass from the
full-resolution input (the ``--input-size`` crop, default 1024x1024, the
paper's Cityscapes crop) to the decode head's logits:

* the resampling to the model's input size, read from the config's test
  pipeline: ``Resize`` -> a bilinear ``F.interpolate`` (mmengine counts
  ``aten::upsample_bilinear2d`` as 4 FLOPs per output element), or
  ``FixedSaliencyZoom`` -> the LZ zoom with its fixed warp (the bilinear
  upsampling of the LZ grid to the output size and the bilinear sampling of
  the image; mmengine counts ``aten::grid_sampler`` as 4 FLOPs per output
  element);
* the network at inference: backbone, every neck level, the decode head
  (not the auxiliary head, unused at inference); for LZU models the unzoom
  of every neck level, which :mod:`lzu_mm.ops` runs as a bilinear
  ``grid_sample`` (``aten::grid_sampler``) per level. mmengine counts
  ``aten::grid_sampler`` itself (4 FLOPs per output element, bilinear), so
  no extra handle is needed; the unzoom column is the network's
  ``grid_sampler`` count (the uniform models have none).

The LZ grid and the unzoom positions of a fixed warp are computed once and
cached (a warm-up pass runs before the count), so they are not per-image
costs and are not counted. The report gives, per config, the total GFLOPs,
the resampling (resize or zoom) and the unzoom.
"""
import argparse
import os.path as osp
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.analysis import FlopAnalyzer  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()  # the plugin's modules and the checkpoint allow-list
from lzu_mm.common.config import merge_cfg_options  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='GFLOPs of uniform / LZU segmentors with zoom and unzoom')
    parser.add_argument('configs', nargs='+', help='MMSegmentation config files')
    parser.add_argument('--input-size', type=int, nargs=2, default=(1024, 1024), metavar=('H', 'W'),
                        help='full-resolution input the model resizes or zooms from (default 1024 1024)')
    parser.add_argument('--saliency', help="override the zoom's saliency file; 'uniform' for a uniform map of the "
                        "config's grid_shape (the FLOPs do not depend on the saliency values)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def _resample_cfg(cfg: Config) -> dict:
    """The test pipeline's ``Resize`` / ``FixedSaliencyZoom`` step."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step['type'] in ('Resize', 'FixedSaliencyZoom'):
            return dict(step)
    raise ValueError('the test pipeline has no Resize or FixedSaliencyZoom step to take the input size from')


class Resample(nn.Module):
    """Resize (uniform, bilinear) or LZ-zoom (fixed warp) a full-resolution image to ``out_shape``."""

    def __init__(self, out_shape, zoom=None):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.zoom = zoom

    def forward(self, img):
        if self.zoom is None:
            return F.interpolate(img, size=self.out_shape, mode='bilinear', align_corners=False)
        return self.zoom.zoom(img, self.out_shape)


class SegmentorForward(nn.Module):
    """A segmentor's inference forward from its resized / zoomed input to the decode head's logits.

    Returns the logits and every neck level (unzoomed for LZU models): mmseg
    computes all of them at inference, and returning them keeps the jit trace
    from dropping the levels the decode head does not read.
    """

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs):
        from lzu_mm.common import LZUMixin
        model = self.model
        if isinstance(model, LZUMixin):
            with model.lzu_context(inputs, self.data_samples) as zoomed:
                feats = model.extract_feat(zoomed)
        else:
            feats = model.extract_feat(inputs)
        return (model.decode_head.forward(feats), *feats)


def build_resample(resample: dict, saliency=None):
    """``(Resample, metainfo)`` from the test pipeline's ``Resize`` / ``FixedSaliencyZoom`` config."""
    from lzu_mm.ops import LZWarp, load_saliency, uniform_saliency
    scale = resample['scale']
    out_shape = (scale, scale) if isinstance(scale, int) else (int(scale[1]), int(scale[0]))
    meta = dict(img_shape=out_shape, pad_shape=out_shape, ori_shape=out_shape)
    zoom = None
    if resample['type'] == 'FixedSaliencyZoom':
        source = saliency or resample['saliency']
        grid_shape = resample['grid_shape']
        sal = uniform_saliency(grid_shape) if source == 'uniform' else load_saliency(source, grid_shape)
        zoom = LZWarp(sal, separable=resample.get('separable', True),
                      attraction_fwhm=resample.get('attraction_fwhm', 13.), anti_crop=resample.get('anti_crop', True))
        meta['lzu_zoom'] = dict(grid=zoom.grid()[0].numpy(), separable=zoom.separable)
    return Resample(out_shape, zoom), meta


def _flops(module: nn.Module, inputs) -> FlopAnalyzer:
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def count(cfg: Config, input_size, saliency=None) -> dict:
    """GFLOPs of one config: ``dict(total, resample, unzoom, params)``."""
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = cfg.model.copy()
    model_cfg.pop('pretrained', None)
    model_cfg.get('backbone', {}).pop('init_cfg', None)
    model = MODELS.build(model_cfg).eval()
    resample, meta = build_resample(_resample_cfg(cfg), saliency)
    network = SegmentorForward(model, [SegDataSample(metainfo=meta)]).eval()
    img = torch.rand(1, 3, *input_size) * 255
    with torch.no_grad():
        small = resample(img)
        network(small)  # warm-up: fills the fixed warp's unzoom-position cache
        resample_flops = _flops(resample, (img, )).total()
        net = _flops(network, (small, ))
        net_flops, unzoom = net.total(), net.by_operator().get('grid_sampler', 0)
    return dict(total=(resample_flops + net_flops) / 1e9, resample=resample_flops / 1e9, unzoom=unzoom / 1e9,
                params=sum(p.numel() for p in model.parameters()) / 1e6)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for path in args.configs:
        cfg = Config.fromfile(path)
        # lzu_zoom.* options and a --saliency file reach the zoom transform ('uniform' is this tool's own shortcut)
        uniform = args.saliency == 'uniform'
        merge_cfg_options(cfg, args.cfg_options, None if uniform else args.saliency, saliency_required=False)
        res = count(cfg, tuple(args.input_size), 'uniform' if uniform else None)
        rows.append((osp.splitext(osp.basename(path))[0], res))
    width = max(len(name) for name, _ in rows)
    print(f'input {args.input_size[0]}x{args.input_size[1]}; 1 FLOP = 1 multiply-add')
    print(f'{"config":<{width}}  {"GFLOPs":>9}  {"resize/zoom":>11}  {"unzoom":>8}  {"params(M)":>9}')
    for name, r in rows:
        print(f'{name:<{width}}  {r["total"]:9.3f}  {r["resample"]:11.4f}  {r["unzoom"]:8.4f}  {r["params"]:9.2f}')
    return rows


if __name__ == '__main__':
    main()
