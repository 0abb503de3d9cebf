# Table 5, uniform downsampling at 0.5x (800x450 of nuScenes' 1600x900): FCOS3D R50-DCN, images resized with
# Resize3D (which also scales cam2img and centers_2d; MMDetection's Resize used by the stock config at 1x does not).
# The LZU counterpart: fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.5x.py
_base_ = './_base_/fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py'

img_scale = (800, 450)

train_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=None),
    dict(
        type='LoadAnnotations3D',
        with_bbox=True,
        with_label=True,
        with_attr_label=True,
        with_bbox_3d=True,
        with_label_3d=True,
        with_bbox_depth=True),
    dict(type='Resize3D', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(
        type='Pack3DDetInputs',
        keys=[
            'img', 'gt_bboxes', 'gt_bboxes_labels', 'attr_labels', 'gt_bboxes_3d', 'gt_labels_3d', 'centers_2d',
            'depths'
        ]),
]
test_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=None),
    dict(type='Resize3D', scale=img_scale, keep_ratio=True),
    dict(type='Pack3DDetInputs', keys=['img']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
