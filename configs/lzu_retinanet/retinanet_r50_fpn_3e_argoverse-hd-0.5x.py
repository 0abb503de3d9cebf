# Table 1, uniform baseline at 0.5x (960x600 of 1920x1200): RetinaNet R50-FPN, uniform downsampling.
# Other scales: retinanet_r50_fpn_3e_argoverse-hd-{0.25x,0.75x,1x}.py (same settings, other img_scale).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    './_base_/argoverse-hd_detection.py',  # composes mmdet::_base_/datasets/coco_detection.py
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

img_scale = (960, 600)  # (w, h): 0.5x of 1920x1200

model = dict(bbox_head=dict(num_classes=8))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                    'sid', 'fid')),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'sid', 'fid')),
]
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# 3 epochs fine-tuning from COCO (LZU §5.1 / FOVEA), SGD lr 0.01 for 8 GPUs x 2 images, step at epoch 2.
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=3, by_epoch=True, milestones=[2], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))

# COCO-trained RetinaNet R50-FPN of mmdet (its 80-class head is re-initialised for 8 classes).
# Offline / from scratch: --cfg-options load_from=None model.backbone.init_cfg=None
load_from = ('https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r50_fpn_1x_coco/'
             'retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth')
