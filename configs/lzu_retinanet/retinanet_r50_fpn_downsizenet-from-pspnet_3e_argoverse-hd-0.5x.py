# DownsizeNet transferred from segmentation to detection (DownsizeNet poster, Table 3: the interpolation network
# pre-trained with DeepLabv3+ on segmentation and reused, re-trained, by a detector; both at the same downsizing
# factor). Here: the DownsizeNet trained with pspnet_r50-fpn_downsizenet_4xb2-80k_cityscapes-512x512.py (0.5x of the
# 1024x1024 crop) initialises the DownsizeNet of retinanet_r50_fpn_downsizenet_3e_argoverse-hd-0.5x.py (0.5x).
# The checkpoint is read strictly: a DownsizeNet of another depth or width fails at load, naming the key.
_base_ = './retinanet_r50_fpn_downsizenet_3e_argoverse-hd-0.5x.py'

pretrained_downsizenet = 'work_dirs/pspnet_r50-fpn_downsizenet_4xb2-80k_cityscapes-512x512/iter_80000.pth'
model = dict(
    lzu=dict(
        interpolation=dict(
            init_cfg=dict(type='Pretrained', checkpoint=pretrained_downsizenet, prefix='lzu_interpolation.'))))
