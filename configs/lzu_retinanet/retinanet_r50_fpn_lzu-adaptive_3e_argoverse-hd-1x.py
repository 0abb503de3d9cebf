# Table 1, "LZU, adaptive" at 1x (1920x1200 of 1920x1200); the model, saliency and training as the 0.5x config
# (where each hyper-parameter comes from is stated there): only the network-input size changes. The saliency is
# still built in pixels of the 1920x1200 frame, as FOVEA does at every scale.
_base_ = './retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py'

img_scale = (1920, 1200)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ResizeWithSource', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs', meta_keys={{_base_.meta_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='ResizeWithSource', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys={{_base_.meta_keys}}),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
