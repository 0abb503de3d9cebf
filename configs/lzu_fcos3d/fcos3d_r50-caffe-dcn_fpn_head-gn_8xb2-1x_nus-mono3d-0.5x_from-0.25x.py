# Table 2 regime (cross-scale): the uniform 0.5x model (800x450) tested on input first resized to 0.25x
# (400x225, e.g. a lower-resolution camera); ChainedResize3D then resizes it to the model's scale, scaling cam2img and
# centers_2d again and composing scale_factor with the first resize. LZU counterpart:
# fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.5x_from-0.25x.py
# Any other source scale: --cfg-options "test_dataloader.dataset.pipeline.1.scale=(800,450)"
_base_ = './fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.5x.py'

input_scale = (400, 225)  # (w, h) of the test input, "from 0.25x"

test_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=None),
    dict(type='Resize3D', scale=input_scale, keep_ratio=True),
    dict(type='ChainedResize3D', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='Pack3DDetInputs', keys=['img']),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
