# Table 1, LZU fixed saliency at 0.25x (480x300 of 1920x1200); saliency and LZ hyper-parameters as the 0.5x
# config (where they come from is stated there).
_base_ = './retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py'

img_scale = (480, 300)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='FixedSaliencyZoom',
        scale=img_scale,
        keep_ratio=True,
        saliency={{_base_.lzu_zoom.saliency}},
        grid_shape={{_base_.lzu_zoom.grid_shape}},
        separable={{_base_.lzu_zoom.separable}},
        attraction_fwhm={{_base_.lzu_zoom.attraction_fwhm}},
        anti_crop={{_base_.lzu_zoom.anti_crop}}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                    'sid', 'fid', 'lzu_zoom', 'homography_matrix')),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='FixedSaliencyZoom',
        scale=img_scale,
        keep_ratio=True,
        saliency={{_base_.lzu_zoom.saliency}},
        grid_shape={{_base_.lzu_zoom.grid_shape}},
        separable={{_base_.lzu_zoom.separable}},
        attraction_fwhm={{_base_.lzu_zoom.attraction_fwhm}},
        anti_crop={{_base_.lzu_zoom.anti_crop}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'sid', 'fid', 'lzu_zoom',
                    'homography_matrix')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
