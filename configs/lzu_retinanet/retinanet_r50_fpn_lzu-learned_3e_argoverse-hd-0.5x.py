# LZU with a learned saliency at 0.5x (LZU §6 names "learned adaptive saliency" as the next step; the saliency
# network after Recasens et al., "Learning to Zoom", ECCV 2018): a small CNN on a low-resolution view of each
# full-resolution image predicts its saliency, whose LZ grid zooms the image on the device; every FPN level is unzoomed
# with the exact inverse, and the network learns from the detection loss through the zoom, the inversion and the
# unzoom. Starts as the uniform baseline retinanet_r50_fpn_3e_argoverse-hd-0.5x.py (constant output = identity warp).
_base_ = './retinanet_r50_fpn_downsizenet_3e_argoverse-hd-0.5x.py'  # its pipelines: ResizeWithSource

# LZ grid: 31x51, separable, anti-crop (LZU §5.1, after FOVEA) and attraction_fwhm=10 as the fixed-saliency config
# (see retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py for where these come from).
# SaliencyNet (our choices, not from a paper): a 248x408 view of the 1920x1200 image (Recasens et al. use 224x224),
# three 3x3 stride-2 convolutions of 16/32/64 channels (-> exactly the 31x51 grid); uniform_mix=0.2: a uniform floor
# of 20 % of the saliency mass against degenerate warps (our choice); no entropy regulariser (entropy_weight=0).
# Bilinear interpolation (DownsizeNet off).
model = dict(
    type='LZURetinaNet',
    lzu=dict(
        _delete_=True,
        saliency_net=dict(
            type='SaliencyNet', input_size=(248, 408), channels=(16, 32, 64), uniform_mix=0.2, entropy_weight=0.),
        grid_shape=(31, 51),
        separable=True,
        attraction_fwhm=10.,
        anti_crop=True))

# The saliency network's parameters in an optimiser group of their own (the learning rate of LZU §5.1, 0.01, for
# all; change lr_mult / decay_mult here to tune the saliency network alone).
optim_wrapper = dict(optimizer=dict(lr=0.01), paramwise_cfg=dict(custom_keys={'lzu_saliency_net': dict(lr_mult=1.)}))
