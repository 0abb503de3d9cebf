# LZU + DownsizeNet at 0.5x: the fixed-saliency LZU config retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py (its
# pipeline zoom is the bilinear side) with the zoom done by the model from the full-resolution image: positions from
# the same fixed LZ warp, interpolation learned by DownsizeNet (its settings and their sources: the base config).
_base_ = './retinanet_r50_fpn_downsizenet_3e_argoverse-hd-0.5x.py'  # its pipelines: ResizeWithSource

# The LZ warp of retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py, where the source of each value is stated
# (FOVEA's KDE SD saliency; grid 31x51, separable, anti-crop: LZU §5.1; attraction_fwhm=10: the LZU author's value,
# tchittesh/lzu issue #1).
lzu_zoom = dict(
    saliency='data/Argoverse/Argoverse-HD/saliency/kde-sd_train_31x51.pkl',
    grid_shape=(31, 51),
    separable=True,
    attraction_fwhm=10.,
    anti_crop=True)
model = dict(
    type='LZURetinaNet',
    lzu=dict(_delete_=True, interpolation={{_base_.downsizenet}}, **lzu_zoom))
