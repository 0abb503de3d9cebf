# FOVEA (Thavamani et al., ICCV 2021) with its fixed "KDE SD" saliency at 1x (1920x1200 of 1920x1200), the LZU paper's
# Table 1 baseline (reported there at 0.5x only: 24.9 AP): the image is zoomed exactly as by the LZU-fixed config
# retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-1x.py (same saliency and LZ hyper-parameters: LZU §5.1 keeps FOVEA's
# setup; sources stated in the 0.5x LZU config), but the whole RetinaNet runs on the zoomed image (no feature unzoom)
# and its boxes are mapped back with the forward warp. Training: the ground truth is zoomed with the exact inverse
# and the losses are RetinaNet's own in the zoomed frame, where FOVEA computed its regression loss on unwarped
# predictions (the difference is documented in lzu_mm/mmdet/fovea.py). Schedule and learning rate (0.01) as LZU's.
_base_ = './retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-1x.py'

model = dict(type='FOVEARetinaNet')
