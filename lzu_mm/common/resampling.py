"""Learned resampling of the full-resolution image: DownsizeNet and a learned saliency network.

A model that zooms the full-resolution source itself (``ResizeWithSource`` in
the pipeline, :class:`lzu_mm.common.LZUMixin` in the model) downsamples it
with *positions x interpolation*: where each output pixel samples the source
(a uniform grid, the LZ grid of a fixed saliency, of an adaptive one, or of
the saliency that :class:`SaliencyNet` predicts) and how the source is
interpolated there (bilinear, :class:`BilinearInterpolation`, or
:class:`DownsizeNet`). Both are configured in the model's ``lzu`` dict::

    lzu=dict(positions='uniform', interpolation=dict(type='DownsizeNet', num_convs=2))       # uniform + DownsizeNet
    lzu=dict(saliency='sal.pkl', grid_shape=(31, 51), interpolation=dict(type='DownsizeNet'))  # LZ + DownsizeNet
    lzu=dict(saliency_net=dict(type='SaliencyNet', input_size=(248, 408)), grid_shape=(31, 51))  # learned LZ

The modules are registered in mmengine's root ``MODELS`` (MMDetection's,
MMSegmentation's and MMDetection3D's registries fall back to it). Their
parameters live under ``lzu_interpolation.`` and ``lzu_saliency_net.`` in the
model's state dict: an optimiser group of their own is
``paramwise_cfg=dict(custom_keys={'lzu_saliency_net': dict(lr_mult=...)})``.

Checkpoints. Both modules check what they load: a checkpoint that holds
some but not all of a module's weights, or a weight of another shape (e.g. a
DownsizeNet of another depth), raises ``ValueError`` naming the key, whether
it comes through ``load_from``, ``tools/test.py CHECKPOINT`` or
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` -- the
transfer path (DownsizeNet poster, Table 3: pre-train the interpolation with
one task, reuse it with another). A checkpoint without any of its weights
(the base detector's) leaves the module at its initialisation.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn

from lzu_mm.ops import bilinear_neighbours, bilinear_resample, identity_grid, interpolate, zoom_sampling_grid
from lzu_mm.ops._validate import check_shape_2d


def _module_keys(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_module_state(module: nn.Module, state: dict, where: str) -> None:
    """Refuse a partial or wrong-shaped state dict for ``module`` (keys relative to the module).

    No key of the module at all is accepted (nothing to load). Otherwise
    every key must be present with the module's shape.

    Raises:
        ValueError: naming the first missing or mismatched key, its shapes and the module.
    """
    own = _module_keys(module)
    present = [k for k in own if k in state]
    if not present:
        return
    for key, shape in own.items():
        if key not in state:
            raise ValueError(f'{where}{key} is missing from the checkpoint, which holds other weights of this '
                             f'{module!r} ({", ".join(where + k for k in present[:3])}, ...): it was saved from '
                             'a module of another configuration')
        got = tuple(state[key].shape)
        if got != shape:
            raise ValueError(f'{where}{key} has shape {got} in the checkpoint but {shape} in {module!r}: the '
                             'checkpoint was saved from a module of another configuration (depth, channels)')


class _CheckedState:
    """Loading a state dict refuses a partial or wrong-shaped copy of this module (see :func:`check_module_state`)."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        mine = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        check_module_state(self, mine, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _pretrained(self) -> Optional[dict]:
        cfg = self.init_cfg
        cfgs = cfg if isinstance(cfg, (list, tuple)) else [cfg]
        found = [c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained']
        return found[-1] if found else None

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> str:
        """Load this module's weights from a checkpoint of any model that contains one like it.

        Args:
            checkpoint: path or URL (mmengine's ``_load_checkpoint``: mmengine
                checkpoints with ``state_dict`` or a bare state dict).
            prefix: where the module sits in that model (``'lzu_interpolation.'``
                for a DownsizeNet saved with any LZU model); ``None``: found
                automatically as the one prefix under which every key of this
                module exists (``''`` for a bare state dict of the module).

        Returns:
            The prefix used.

        Raises:
            ValueError: no or several candidate prefixes, or a partial /
                wrong-shaped copy under the prefix (naming the key).
        """
        from mmengine.runner.checkpoint import _load_checkpoint
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
        own = _module_keys(self)
        name = type(self).__name__
        if prefix is None:
            first = next(iter(own))
            candidates = [k[:-len(first)] for k in state if k.endswith(first) and
                          (k == first or k[-len(first) - 1] == '.')]
            candidates = [p for p in candidates if any(p + k in state for k in own)]
            if len(candidates) != 1:
                raise ValueError(f'{checkpoint}: cannot tell where the {name} is in this checkpoint (candidate '
                                 f'prefixes {candidates}, looking for {first!r}); pass init_cfg=dict(type='
                                 "'Pretrained', checkpoint=..., prefix='lzu_interpolation.') (or the prefix it has)")
            prefix = candidates[0]
        elif prefix and not prefix.endswith('.'):
            prefix += '.'
        mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not any(k in mine for k in own):
            raise ValueError(f'{checkpoint}: no {name} weights under prefix {prefix!r} (expected e.g. '
                             f'{prefix + next(iter(own))!r})')
        check_module_state(self, mine, prefix)
        self.load_state_dict({k: mine[k] for k in own}, strict=True)
        return prefix

    def _init_or_load(self, reset) -> None:
        pretrained = self._pretrained()
        if pretrained is not None:
            self.load_pretrained(pretrained['checkpoint'], pretrained.get('prefix'))
        else:
            super().init_weights()
            reset()
        self._is_init = True


@MODELS.register_module()
class BilinearInterpolation(nn.Module):
    """Bilinear interpolation at the sampling positions (``grid_sample``): the default, no parameters.

    ``forward(images [B, C, H, W], sampling_grid [B, Ho, Wo, 2]) -> [B, C, Ho, Wo]``
    (:func:`lzu_mm.ops.bilinear_resample`).
    """

    def forward(self, images: Tensor, sampling_grid: Tensor) -> Tensor:
        return bilinear_resample(images, sampling_grid)


@MODELS.register_module()
class DownsizeNet(_CheckedState, BaseModule):
    """Learned interpolation for downsizing (Mai, Li, Li, Wang, Kim, "Task Generalizable Spatial and Texture Aware
    Image Downsizing Network"), as a drop-in for bilinear interpolation at any sampling positions.

    For every output pixel the sampling position ``Q'`` in the source, its
    four neighbours ``q1..q4`` (``q1 = P1`` the top-left one) and their
    bilinear weights ``w1..w4`` (the relative distances of ``Q'`` to its
    neighbours, the poster's distance encoding) come from
    :func:`lzu_mm.ops.bilinear_neighbours`. A small CNN (``num_convs`` 3x3
    convolutions with ReLU, ``feat_channels`` wide) on the *source* image gives
    the texture feature; the "floating pooling" layer takes the feature of
    ``P1``; a 1x1 convolution of ``[feature(P1), w1..w4]`` gives four logits
    ``z`` and the coefficients are

    * ``activation='softmax'``: ``a = softmax(z + log w)`` (computed as
      ``w exp(z) / sum(w exp(z))``: the bilinear log-weights enter the logits
      with a fixed unit weight),
    * ``activation='sigmoid'``: ``a = w sigmoid(z) / sum(w sigmoid(z))``,

    so ``a_i >= 0`` and ``sum a_i = 1`` (the poster's constraints); the output
    is ``sum a_i q_i``. The 1x1 convolution starts at zero, so at
    initialisation ``a = w``: exactly bilinear interpolation (and a pretrained
    base model's accuracy is the starting point). Its texture weights are
    trained first (the first step's gradient reaches the 1x1 convolution; the
    3x3 convolutions receive gradients once it is non-zero, from the second
    step on).

    Pixel convention: the positions carry it. With the project default (the
    half-pixel convention, ``align_corners=False`` of the zoom, as
    ``Resize``) uniform positions at initialisation reproduce a bilinear
    ``Resize`` of the source; positions made with ``align_corners=True``
    reproduce the corner-aligned resize. Upsampling (output larger than the
    input, Table 2's regime) works the same way.

    Args:
        in_channels: channels of the source image (3).
        feat_channels: width of the texture CNN (our choice: 16; the poster
            gives no width).
        num_convs: 3x3 convolutions of the texture CNN (poster: 2-3; its
            Table 9 times 2, 3 and 4).
        activation: ``'softmax'`` or ``'sigmoid'`` (the poster's two options).
        input_scale: the texture CNN sees ``source * input_scale`` (sources are
            un-normalised, 0-255, in the pipeline's channel order).
        init_cfg: mmengine init config; ``dict(type='Pretrained',
            checkpoint=..., prefix=...)`` loads a DownsizeNet trained with
            another model (checked strictly, see :meth:`load_pretrained`).

    Raises:
        ValueError: bad arguments (at build time).
    """

    def __init__(self,
                 in_channels: int = 3,
                 feat_channels: int = 16,
                 num_convs: int = 2,
                 activation: str = 'softmax',
                 input_scale: float = 1 / 255.,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        for name, value in (('in_channels', in_channels), ('feat_channels', feat_channels), ('num_convs', num_convs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'DownsizeNet: {name} must be a positive int, got {value!r}')
        if activation not in ('softmax', 'sigmoid'):
            raise ValueError(f"DownsizeNet: activation must be 'softmax' or 'sigmoid', got {activation!r}")
        if not (isinstance(input_scale, (int, float)) and math.isfinite(input_scale) and input_scale > 0):
            raise ValueError(f'DownsizeNet: input_scale must be a positive number, got {input_scale!r}')
        self.in_channels, self.feat_channels, self.num_convs = in_channels, feat_channels, num_convs
        self.activation = activation
        self.input_scale = float(input_scale)
        layers = []
        for k in range(num_convs):
            layers += [nn.Conv2d(in_channels if k == 0 else feat_channels, feat_channels, 3, padding=1),
                       nn.ReLU(inplace=True)]
        self.texture = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.coefficients = nn.Conv2d(feat_channels + 4, 4, 1)
        self.reset_to_bilinear()

    def extra_repr(self) -> str:
        return f'num_convs={self.num_convs}, feat_channels={self.feat_channels}, activation={self.activation!r}'

    def __repr__(self) -> str:
        return f'DownsizeNet({self.extra_repr()})'

    @torch.no_grad()
    def reset_to_bilinear(self) -> None:
        """Zero the 1x1 convolution: the coefficients become the bilinear weights exactly."""
        nn.init.zeros_(self.coefficients.weight)
        nn.init.zeros_(self.coefficients.bias)

    def init_weights(self) -> None:
        """Bilinear start (texture CNN: PyTorch's / ``init_cfg``'s init), or a strict ``Pretrained`` load."""
        self._init_or_load(self.reset_to_bilinear)

    def coefficient_maps(self, images: Tensor, sampling_grid: Tensor):
        """``(a [B, 4, Ho, Wo], bilinear weights w [B, 4, Ho, Wo], neighbours)`` at the sampling positions.

        Args:
            images: ``[B, C, H, W]`` sources (float, un-normalised).
            sampling_grid: ``[B or 1, Ho, Wo, 2]`` ``grid_sample`` grid over the
                source tensor (``align_corners=True``), e.g.
                :meth:`lzu_mm.ops.LZWarp.zoom_sampling_grid`.
        """
        neighbours = bilinear_neighbours(images, sampling_grid)
        bsz, _, out_h, out_w = neighbours.weights.shape
        # channels-last: 2-3x faster convolutions of few channels on CPU (oneDNN), and contiguous rows to gather
        feat = self.texture((images * self.input_scale).contiguous(memory_format=torch.channels_last))
        width = feat.shape[1]
        rows = feat.permute(0, 2, 3, 1).reshape(bsz, -1, width)  # [B, H * W, F]
        pooled = rows.gather(1, neighbours.top_left[..., None].expand(-1, -1, width))  # floating pooling: [B, N, F]
        w = neighbours.weights.to(pooled.dtype).flatten(2).transpose(1, 2)  # [B, N, 4]
        # the 1x1 convolution of [feature(P1), w] as two matmuls over the rows (no concatenated copy)
        weight = self.coefficients.weight[:, :, 0, 0]
        z = F.linear(pooled, weight[:, :width], self.coefficients.bias) + F.linear(w, weight[:, width:])
        if self.activation == 'softmax':
            gate = torch.exp(z - z.amax(-1, keepdim=True).detach())
        else:
            gate = torch.sigmoid(z)
        weighted = w * gate
        a = weighted / weighted.sum(-1, keepdim=True).clamp_min(torch.finfo(weighted.dtype).tiny)
        to_maps = lambda t: t.transpose(1, 2).reshape(bsz, 4, out_h, out_w)  # noqa: E731
        return to_maps(a), to_maps(w), neighbours

    def forward(self, images: Tensor, sampling_grid: Tensor) -> Tensor:
        """``[B, C, Ho, Wo]``: the sources interpolated at the sampling positions (dtype of ``images``)."""
        a, _, neighbours = self.coefficient_maps(images, sampling_grid)
        return interpolate(neighbours, a)


@MODELS.register_module()
class SaliencyNet(_CheckedState, BaseModule):
    """A learned saliency map from a low-resolution view of the image (Recasens et al., ECCV 2018; LZU §6).

    The valid region of each (padded) source is average-pooled by an integer
    factor and resized bilinearly to ``input_size``, scaled by
    ``input_scale``, run through ``len(channels)`` 3x3 stride-2 convolutions
    with ReLU and a 1x1 convolution to one channel, resized bilinearly to
    ``grid_shape`` and normalised with a softmax over the map: a ``[B, 1, h,
    w]`` saliency summing to 1 per image, which the LZ grid, zoom and unzoom
    turn into the warp (differentiably, through the exact inversion).

    The 1x1 convolution starts at zero: the output is then constant, i.e. the
    uniform saliency, whose LZ grid is the identity (the model starts as its
    base model). Regularisers against degenerate warps (our options; neither
    paper prescribes one here):

    * ``uniform_mix`` ``lambda`` in ``[0, 1)``: ``S = (1 - lambda) S_net +
      lambda / (h w)``, a floor that bounds the compression anywhere;
    * ``entropy_weight`` ``beta >= 0``: the loss ``loss_saliency_entropy = beta
      (1 - H(S) / log(h w))`` (0 for the uniform map, 1 for a point mass).

    Args:
        grid_shape: ``(h, w)`` of the output saliency (the LZ grid shape).
        input_size: ``(h, w)`` of the low-resolution view, pixels.
        in_channels: channels of the source image.
        channels: width of each stride-2 convolution.
        input_scale: the network sees ``source * input_scale``.
        uniform_mix, entropy_weight: regularisers (above).
        init_cfg: mmengine init config (``Pretrained`` loads strictly).

    Raises:
        ValueError: bad arguments (at build time).
    """

    def __init__(self,
                 grid_shape: Sequence[int],
                 input_size: Sequence[int] = (128, 128),
                 in_channels: int = 3,
                 channels: Sequence[int] = (16, 32, 64),
                 input_scale: float = 1 / 255.,
                 uniform_mix: float = 0.,
                 entropy_weight: float = 0.,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        self.grid_shape = check_shape_2d(grid_shape, 'SaliencyNet grid_shape')
        if min(self.grid_shape) < 2:
            raise ValueError(f'SaliencyNet: grid_shape must be at least (2, 2), got {self.grid_shape}')
        self.input_size = check_shape_2d(input_size, 'SaliencyNet input_size')
        channels = tuple(channels)
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f'SaliencyNet: channels must be a non-empty sequence of positive ints, got {channels!r}')
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'SaliencyNet: in_channels must be a positive int, got {in_channels!r}')
        if not (isinstance(uniform_mix, (int, float)) and 0 <= uniform_mix < 1):
            raise ValueError(f'SaliencyNet: uniform_mix must be in [0, 1), got {uniform_mix!r}')
        if not (isinstance(entropy_weight, (int, float)) and math.isfinite(entropy_weight) and entropy_weight >= 0):
            raise ValueError(f'SaliencyNet: entropy_weight must be a non-negative number, got {entropy_weight!r}')
        if not (isinstance(input_scale, (int, float)) and math.isfinite(input_scale) and input_scale > 0):
            raise ValueError(f'SaliencyNet: input_scale must be a positive number, got {input_scale!r}')
        self.in_channels, self.channels = in_channels, channels
        self.input_scale = float(input_scale)
        self.uniform_mix, self.entropy_weight = float(uniform_mix), float(entropy_weight)
        layers, width = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            width = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 1, bias=False)  # a bias is a constant under the softmax
        self.reset_to_uniform()

    def __repr__(self) -> str:
        return (f'SaliencyNet(grid_shape={self.grid_shape}, input_size={self.input_size}, channels={self.channels}, '
                f'uniform_mix={self.uniform_mix}, entropy_weight={self.entropy_weight})')

    @torch.no_grad()
    def reset_to_uniform(self) -> None:
        """Zero the 1x1 head: the saliency becomes uniform (identity warp)."""
        nn.init.zeros_(self.head.weight)

    def init_weights(self) -> None:
        """Uniform start (features: PyTorch's / ``init_cfg``'s init), or a strict ``Pretrained`` load."""
        self._init_or_load(self.reset_to_uniform)

    def low_resolution_view(self, sources: Tensor, src_shapes: Sequence[Sequence[int]]) -> Tensor:
        """``[B, C, h_in, w_in]`` view of each source's valid region (area-pooled, then bilinear), scaled."""
        bsz, _, height, width = sources.shape
        shapes = torch.tensor([[int(h), int(w)] for h, w in src_shapes], dtype=torch.float64)
        factor = max(1, int(min(float(shapes[:, 0].min()) / self.input_size[0],
                                float(shapes[:, 1].min()) / self.input_size[1])))
        pooled = F.avg_pool2d(sources, factor) if factor > 1 else sources
        valid = (shapes / factor).floor().clamp_min(1)
        sampling = zoom_sampling_grid(identity_grid(device=sources.device), pooled.shape[-2:], self.input_size, bsz,
                                      valid, None, pooled.dtype if pooled.dtype == torch.float64 else torch.float32)
        return bilinear_resample(pooled, sampling) * self.input_scale

    def forward(self, sources: Tensor, src_shapes: Optional[Sequence[Sequence[int]]] = None) -> Tensor:
        """The saliency ``[B, 1, h, w]`` (non-negative, sums to 1 per image) of ``[B, C, H, W]`` sources.

        ``src_shapes``: valid ``(h, w)`` of each source in the padded batch
        (default: the whole tensor).
        """
        if src_shapes is None:
            src_shapes = [tuple(sources.shape[-2:])] * sources.shape[0]
        logits = self.head(self.features(self.low_resolution_view(sources, src_shapes)))
        if tuple(logits.shape[-2:]) != self.grid_shape:
            logits = F.interpolate(logits, size=self.grid_shape, mode='bilinear', align_corners=False)
        sal = torch.softmax(logits.flatten(1).float(), 1).view(-1, 1, *self.grid_shape)
        if self.uniform_mix:
            sal = (1 - self.uniform_mix) * sal + self.uniform_mix / sal[0, 0].numel()
        return sal

    def loss(self, saliency: Tensor) -> dict:
        """The entropy regulariser of a batch's saliency (empty when ``entropy_weight`` is 0)."""
        if not self.entropy_weight:
            return {}
        p = saliency.flatten(1)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(p.shape[1])
        return dict(loss_saliency_entropy=self.entropy_weight * (1 - entropy).mean())
