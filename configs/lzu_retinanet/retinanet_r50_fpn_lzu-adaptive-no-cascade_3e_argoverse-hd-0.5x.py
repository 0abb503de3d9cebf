# Table 1 ablation, "LZU, adaptive" without cascaded saliency at 0.5x: all 3 epochs train on jittered ground-truth
# boxes (no epoch on the model's own detections); everything else as
# retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py.
_base_ = './retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py'

# begin_epoch=None: never switch to the cascade; the hook still logs the phase of every epoch.
custom_hooks = [dict(type='CascadeSaliencyHook', begin_epoch=None)]
