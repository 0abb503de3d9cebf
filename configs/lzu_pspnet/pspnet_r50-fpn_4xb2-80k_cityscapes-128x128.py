# Uniform baseline of LZU Table 3: the centred 1024x1024 Cityscapes crop resized to 128x128, PSPNet R50 + FPN.
_base_ = ['./_base_/pspnet_r50-fpn_cityscapes-center-crop.py']

img_size = 128  # paper §5.2: 64, 128, 256, 512
data_preprocessor = dict(size=(img_size, img_size))
model = dict(data_preprocessor=data_preprocessor)

# mmseg's PackSegInputs meta_keys plus CenterSquareCrop's crop_box, which LZUSegLocalVisualizer needs to draw the
# predictions (crop frame) on the full image re-read by SegVisualizationHook (tools/test.py --show-dir).
meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
             'flip_direction', 'reduce_zero_label', 'crop_box')

# No random scale / crop: the paper's input is the fixed centred square crop (CenterSquareCrop, largest square =
# 1024x1024 of a 1024x2048 frame). Flip and photometric distortion as in mmseg's Cityscapes base (our choice).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CenterSquareCrop'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs', meta_keys=meta_keys)
]
# Labels are loaded after the resize (mmseg's convention) and cropped like the image: evaluation happens at the
# crop's full resolution (CenterSquareCrop sets ori_shape to the crop).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CenterSquareCrop'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='CenterSquareCrop', keys=('gt_seg_map', )),
    dict(type='PackSegInputs', meta_keys=meta_keys)
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
