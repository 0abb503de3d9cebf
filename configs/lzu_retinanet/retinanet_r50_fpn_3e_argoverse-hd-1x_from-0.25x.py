# Table 2 regime (cross-scale): the uniform 1x model tested on input first resized to 0.25x (480x300), i.e. a
# lower-resolution camera; the model's resize then upsamples it to its own scale. ChainedResize keeps
# scale_factor relative to the original image, so boxes are evaluated in original coordinates.
# Any other source scale: --cfg-options "test_dataloader.dataset.pipeline.1.scale=(960,600)"
_base_ = './retinanet_r50_fpn_3e_argoverse-hd-1x.py'

input_scale = (480, 300)  # (w, h) of the test input, "from 0.25x"

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=input_scale, keep_ratio=True),
    dict(type='ChainedResize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'sid', 'fid')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
