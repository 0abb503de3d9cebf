# LZU + DownsizeNet at 256x256: the LZU-fixed Table 3 row pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-256x256.py
# (its pipeline zoom is the bilinear side) zoomed by the model from the full-resolution crop: positions from the same
# fixed LZ warp, interpolation learned by DownsizeNet (its settings and their sources: the base config).
_base_ = ['./pspnet_r50-fpn_downsizenet_4xb2-80k_cityscapes-256x256.py']  # its pipelines: ResizeWithSource

# The LZ warp of pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-256x256.py, where the source of each value is stated
# (boundary saliency after Marin et al. 2019, paper §5.2; grid 32x32 and FWHM 10: our choices; separable, anti-crop).
lzu_zoom = dict(
    saliency='data/cityscapes/lzu/boundary_saliency_32x32.pkl',
    grid_shape=(32, 32),
    attraction_fwhm=10.,
    separable=True,
    anti_crop=True)
model = dict(lzu=dict(_delete_=True, interpolation={{_base_.downsizenet}}, **lzu_zoom))
