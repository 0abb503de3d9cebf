# DownsizeNet vs bilinear downsizing at 512x512: the uniform Table 3 row pspnet_r50-fpn_4xb2-80k_cityscapes-512x512.py
# (its bilinear Resize is the "bilinear" side) with the downsizing of the 1024x1024 crop learned by DownsizeNet (Mai et
# al., "Task Generalizable Spatial and Texture Aware Image Downsizing Network"; poster Table 2 is the segmentation
# regime), in the model, at the uniform resize's positions, trained end to end with the segmentation loss; it starts
# as exactly bilinear. The pipeline hands the model the full-resolution crop (ResizeWithSource).
_base_ = ['./pspnet_r50-fpn_4xb2-80k_cityscapes-512x512.py']

img_size = 512
# DownsizeNet: num_convs=2 (poster: "2~3 3*3 convolution layers"), softmax coefficients (poster: "the last sigmoid can
# be replaced by softmax"), feat_channels=16 (our choice: the poster gives no width).
downsizenet = dict(type='DownsizeNet', num_convs=2, feat_channels=16, activation='softmax')
model = dict(type='LZUEncoderDecoder', lzu=dict(positions='uniform', interpolation=downsizenet))
meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
             'flip_direction', 'reduce_zero_label', 'lzu_zoom', 'crop_box')

# PhotoMetricDistortion comes before the resize here (after it in the uniform config): the model resamples the
# full-resolution source, which a photometric transform after the resize would not reach (refused by
# check_lzu_config). Its brightness / contrast steps are per-pixel affine and commute with any convex interpolation.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CenterSquareCrop'),
    dict(type='PhotoMetricDistortion'),
    dict(type='ResizeWithSource', scale=(img_size, img_size), keep_ratio=False),  # gt_seg_map resized uniformly
    dict(type='RandomFlip', prob=0.5),  # applied to the source too
    dict(type='PackSegInputs', meta_keys=meta_keys)
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CenterSquareCrop'),
    dict(type='ResizeWithSource', scale=(img_size, img_size), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='CenterSquareCrop', keys=('gt_seg_map', )),
    dict(type='PackSegInputs', meta_keys=meta_keys)
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
