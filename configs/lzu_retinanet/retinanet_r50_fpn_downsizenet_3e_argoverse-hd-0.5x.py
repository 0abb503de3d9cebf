# DownsizeNet vs bilinear downsizing at 0.5x (960x600 of 1920x1200): the uniform baseline
# retinanet_r50_fpn_3e_argoverse-hd-0.5x.py (its bilinear Resize is the "bilinear" side) with the downsizing learned:
# the pipeline resizes uniformly only for the labels and hands the full-resolution image to the model
# (ResizeWithSource), which resamples it on the device at the same uniform positions with DownsizeNet (Mai et al.,
# "Task Generalizable Spatial and Texture Aware Image Downsizing Network"; poster Table 1 is the detection regime),
# trained end to end with the detection loss. At initialisation DownsizeNet is exactly bilinear, so the COCO-pretrained
# detector's accuracy is the starting point (load_from as the baseline; DownsizeNet's weights are not in it).
_base_ = './retinanet_r50_fpn_3e_argoverse-hd-0.5x.py'

img_scale = (960, 600)

# DownsizeNet: num_convs=2 3x3 convolutions (poster: "2~3 3*3 convolution layers"; Table 9: +9 % latency at 2),
# softmax coefficients (poster: "the last sigmoid can be replaced by softmax"), feat_channels=16 (our choice: the
# poster gives no width).
downsizenet = dict(type='DownsizeNet', num_convs=2, feat_channels=16, activation='softmax')
# positions='uniform': the sampling positions of the uniform resize (nothing to unzoom); only the interpolation is new.
model = dict(type='LZURetinaNet', lzu=dict(positions='uniform', interpolation=downsizenet))

meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction', 'sid', 'fid',
             'lzu_zoom', 'homography_matrix')
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ResizeWithSource', scale=img_scale, keep_ratio=True),  # Resize + the full-resolution image (uint8)
    dict(type='RandomFlip', prob=0.5),  # applied to the source too (lzu_mm.common.LZUMixin)
    dict(type='PackDetInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='ResizeWithSource', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=meta_keys[:5] + ('sid', 'fid', 'lzu_zoom', 'homography_matrix')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
