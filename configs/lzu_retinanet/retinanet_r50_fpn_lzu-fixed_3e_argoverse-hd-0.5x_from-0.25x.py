# Table 2 regime (cross-scale): the LZU fixed-saliency 0.5x model tested on input first resized to 0.25x
# (480x300); FixedSaliencyZoom then zooms (here: upsamples non-uniformly) that input to the model's scale and
# composes scale_factor with the first resize, so boxes are evaluated in original coordinates.
# Any other source scale: --cfg-options "test_dataloader.dataset.pipeline.1.scale=(960,600)"
_base_ = './retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py'

input_scale = (480, 300)  # (w, h) of the test input, "from 0.25x"

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=input_scale, keep_ratio=True),
    dict(
        type='FixedSaliencyZoom',
        scale={{_base_.img_scale}},
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
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
