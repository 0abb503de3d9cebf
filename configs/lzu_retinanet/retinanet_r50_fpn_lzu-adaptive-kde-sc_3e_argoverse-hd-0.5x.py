# FOVEA's composite saliency ("KDE SC") with LZU at 0.5x: 0.5 x the previous frame's KDE + 0.5 x the fixed,
# dataset-wide KDE ("KDE SD", the saliency of the lzu-fixed configs). Everything else as
# retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py.
_base_ = './retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py'

model = dict(
    # the fixed saliency (made by tools/saliency/box_kde_saliency.py,
    # see retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py)
    lzu=dict(saliency='data/Argoverse/Argoverse-HD/saliency/kde-sd_train_31x51.pkl'),
    # alpha: weight of the adaptive saliency, FOVEA configs/models/composite_kde_grid.py (0.5). First frames and
    # empty detections: 0.5 x uniform + 0.5 x fixed, as FOVEA (its adaptive part is uniform without boxes).
    adaptive=dict(alpha=0.5))
