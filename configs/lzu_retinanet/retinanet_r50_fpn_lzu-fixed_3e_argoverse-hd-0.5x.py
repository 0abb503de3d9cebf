# Table 1, LZU with a fixed (dataset-wide) saliency at 0.5x (960x600 of 1920x1200): the uniform baseline with
# Resize replaced by FixedSaliencyZoom and RetinaNet by LZURetinaNet (every FPN level unzoomed), LZU §5.1.
# Other scales: retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-{0.25x,0.75x,1x}.py.
_base_ = './retinanet_r50_fpn_3e_argoverse-hd-0.5x.py'

img_scale = (960, 600)

# The fixed saliency: FOVEA's "KDE SD" over the training boxes, made by
#   python tools/saliency/box_kde_saliency.py data/Argoverse/Argoverse-HD/annotations/train.json \
#       data/Argoverse/Argoverse-HD/saliency/kde-sd_train_31x51.pkl --grid-shape 31 51 --bandwidth-scale 64
# (bandwidth_scale=64 and the tool's default uniform term, 0.4249 of a box's mass at 31x51, are those of FOVEA's
# released configs/models/plain_kde_grid.py and bbox2sal, which its tools/compute_dataset_saliency.py uses).
# LZ hyper-parameters:
# * grid_shape (31, 51), separable, anti_crop: LZU paper §5.1 (following FOVEA, ICCV 2021, for Argoverse-HD).
# * attraction_fwhm=10 (grid cells): the value the LZU author gives for the paper's detection experiments
#   (tchittesh/lzu issue #1), not FOVEA's released default 4. The paper grid-searched it at 0.5x.
lzu_zoom = dict(
    saliency='data/Argoverse/Argoverse-HD/saliency/kde-sd_train_31x51.pkl',
    grid_shape=(31, 51),
    separable=True,
    attraction_fwhm=10.,
    anti_crop=True)

model = dict(type='LZURetinaNet', lzu=None)  # lzu=None: the pipeline zooms, the model unzooms with its record
# 'lzu_zoom' (the recorded grid) and 'homography_matrix' in meta_keys: the model composes a flip after the zoom
# into the grid exactly and refuses any other transform after it (lzu_mm.common.model.post_zoom_flip).

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='FixedSaliencyZoom', scale=img_scale, keep_ratio=True, **lzu_zoom),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip', 'flip_direction',
                    'sid', 'fid', 'lzu_zoom', 'homography_matrix')),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='FixedSaliencyZoom', scale=img_scale, keep_ratio=True, **lzu_zoom),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'sid', 'fid', 'lzu_zoom',
                    'homography_matrix')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# LZU learning rate 0.01 (LZU §5.1), as the baseline.
optim_wrapper = dict(optimizer=dict(lr=0.01))
