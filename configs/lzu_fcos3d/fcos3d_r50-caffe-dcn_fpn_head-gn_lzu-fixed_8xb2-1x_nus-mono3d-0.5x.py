# Table 5, LZU with a fixed saliency at 0.5x (800x450 of nuScenes' 1600x900): the uniform baseline
# fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.5x.py
# with Resize3D replaced by FixedSaliencyZoom3D and the detector by LZUFCOSMono3D
# (every FPN level unzoomed before the head; intrinsics, centers_2d and 2D boxes scale uniformly), LZU §5.3.
# Saliency and LZ hyper-parameters: ./_base_/lzu-fixed_nus-mono3d.py.
_base_ = ['./fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.5x.py', './_base_/lzu-fixed_nus-mono3d.py']

model = dict(type='LZUFCOSMono3D', lzu=None)  # lzu=None: the pipeline zooms, the model unzooms with its record

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
    dict(
        type='FixedSaliencyZoom3D',
        scale={{_base_.img_scale}},
        keep_ratio=True,
        saliency={{_base_.lzu_zoom.saliency}},
        grid_shape={{_base_.lzu_zoom.grid_shape}},
        separable={{_base_.lzu_zoom.separable}},
        attraction_fwhm={{_base_.lzu_zoom.attraction_fwhm}},
        anti_crop={{_base_.lzu_zoom.anti_crop}}),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5),
    dict(
        type='Pack3DDetInputs',
        keys=[
            'img', 'gt_bboxes', 'gt_bboxes_labels', 'attr_labels', 'gt_bboxes_3d', 'gt_labels_3d', 'centers_2d',
            'depths'
        ],
        meta_keys={{_base_.lzu_meta_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=None),
    dict(
        type='FixedSaliencyZoom3D',
        scale={{_base_.img_scale}},
        keep_ratio=True,
        saliency={{_base_.lzu_zoom.saliency}},
        grid_shape={{_base_.lzu_zoom.grid_shape}},
        separable={{_base_.lzu_zoom.separable}},
        attraction_fwhm={{_base_.lzu_zoom.attraction_fwhm}},
        anti_crop={{_base_.lzu_zoom.anti_crop}}),
    dict(type='Pack3DDetInputs', keys=['img'], meta_keys={{_base_.lzu_meta_keys}}),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
