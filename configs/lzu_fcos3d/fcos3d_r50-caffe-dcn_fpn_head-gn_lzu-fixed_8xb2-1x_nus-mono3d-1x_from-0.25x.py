# Table 2 regime (cross-scale): the LZU fixed-saliency 1x model (1600x900) tested on input first resized to
# 0.25x (400x225, e.g. a lower-resolution camera); FixedSaliencyZoom3D then zooms that input to the model's scale
# (magnifying the salient regions), scaling cam2img and centers_2d uniformly and composing scale_factor with the
# first resize. Any other source scale: --cfg-options "test_dataloader.dataset.pipeline.1.scale=(800,450)"
_base_ = './fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-1x.py'

input_scale = (400, 225)  # (w, h) of the test input, "from 0.25x"

test_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=None),
    dict(type='Resize3D', scale=input_scale, keep_ratio=True),
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
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
