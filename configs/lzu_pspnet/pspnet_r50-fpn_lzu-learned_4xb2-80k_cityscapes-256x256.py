# LZU with a learned saliency at 256x256 (LZU §6's "learned adaptive saliency"; the saliency network after Recasens
# et al., ECCV 2018): a small CNN on a low-resolution view of each 1024x1024 crop predicts its saliency, whose LZ grid
# zooms the crop on the device; the FPN levels are unzoomed with the exact inverse and the network learns from the
# segmentation loss through the zoom, the inversion and the unzoom. Starts as the uniform 256x256 row (constant
# output = identity warp).
_base_ = ['./pspnet_r50-fpn_downsizenet_4xb2-80k_cityscapes-256x256.py']  # pipelines: ResizeWithSource

# LZ grid 32x32, FWHM 10 cells, separable, anti-crop: as the fixed-saliency row (our choices, stated in
# pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-256x256.py). SaliencyNet (our choices): a 256x256 view of the crop,
# three 3x3 stride-2 convolutions of 16/32/64 channels (-> exactly the 32x32 grid), uniform_mix=0.2 (a uniform floor of
# 20 % of the saliency mass against degenerate warps), no entropy regulariser. Bilinear interpolation (no DownsizeNet).
model = dict(
    type='LZUEncoderDecoder',
    lzu=dict(
        _delete_=True,
        saliency_net=dict(
            type='SaliencyNet', input_size=(256, 256), channels=(16, 32, 64), uniform_mix=0.2, entropy_weight=0.),
        grid_shape=(32, 32),
        attraction_fwhm=10.,
        separable=True,
        anti_crop=True))

# The saliency network in an optimiser group of its own (mmseg's lr 0.01 for all; tune lr_mult / decay_mult here).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'lzu_saliency_net': dict(lr_mult=1.)}))
