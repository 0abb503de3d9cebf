# PSPNet, ResNet-50 + FPN, on the centred 1024x1024 crop of Cityscapes (LZU paper §5.2, Table 3).
# Composes MMSegmentation's own bases; the size configs next to this file set the input size and pipelines.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['lzu_mm.mmseg'], allow_failed_imports=False)

# Model: "PSPNet with a ResNet-50 backbone and FPN" (paper §5.2). The paper does not spell out how the two are
# joined; our choice: a non-dilated ResNet-50-V1c (ImageNet weights from mmseg's base, `pretrained`), an FPN with
# 4 levels of 256 channels (strides 4-32), the PSP head on the stride-8 level (the output stride of mmseg's
# PSPNet-D8) and the auxiliary FCN head on the stride-16 level (the base's res4 position). LZU unzooms all FPN
# levels, so both heads see unzoomed features.
model = dict(
    backbone=dict(dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2)),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=4),
    decode_head=dict(in_channels=256, in_index=1),
    auxiliary_head=dict(in_channels=256, in_index=2),
    # whole-image inference: the input is the resized (or zoomed) crop; LZUEncoderDecoder refuses 'slide'
    test_cfg=dict(mode='whole'))

# Data (paper §5.2): train on Cityscapes train minus 500 held-out images, validate on those 500 ("mini-val") at 10
# equally spaced points, evaluate the best checkpoint on the official val set. The split files are written by
# tools/misc/cityscapes_holdout_split.py (seed 0). Inputs are the centred square crop, resized (uniform) or
# zoomed (LZU) to the target size; predictions are evaluated at the crop's full resolution against the cropped
# labels (mmseg's convention of evaluating at the original resolution, the crop being the original image).
data_root = 'data/cityscapes/'
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='splits/train_minus_minival500.txt',
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='splits/minival500.txt',
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train')))
test_dataloader = dict(
    dataset=dict(
        data_root=data_root, ann_file='', data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val')))

# Table 3 reports mIoU and the 19 per-class IoUs: mmseg's IoUMetric logs both (the per-class table); it also picks
# the best mini-val checkpoint. The test adds cityscapesscripts' evaluation (official layout, gtFine labelIds and
# instanceIds) through CenterCropCityscapesMetric, which evaluates against the same centred crop of the gtFine files.
# Its labelIds predictions and the cropped gtFine files are kept in <work_dir>/format_results (tools/test.py puts a
# relative output_dir under the work dir).
# ClasswiseIoUMetric = IoUMetric with the per-class IoUs also in its results (mmengine's JSON, for tools/reproduce).
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = [
    dict(type='ClasswiseIoUMetric', iou_metrics=['mIoU']),
    dict(type='CenterCropCityscapesMetric', output_dir='format_results', keep_results=True)
]

# Schedule: mmseg's 80k-iteration Cityscapes schedule (SGD, lr 0.01, poly), batch 4 GPUs x 2 images (our choice of
# length and batch; the paper's are not restated here; --auto-scale-lr rescales lr 0.01 from this total batch of 8).
# Validation every 8k iterations = 10 equally spaced points;
# the best mini-val mIoU checkpoint is kept (best_mIoU_iter_*.pth) for the test on val.
train_cfg = dict(val_interval=8000)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=8000, save_best='mIoU', rule='greater', max_keep_ckpts=1))
auto_scale_lr = dict(enable=False, base_batch_size=8)  # 4 GPUs x 2 images (mmseg's schedules define none)

# Visualisation (SegVisualizationHook, tools/test.py --show / --show-dir, MMSegInferencer): mmseg's visualizer, cutting
# the re-read full frame to the crop box that CenterSquareCrop records (meta key 'crop_box') before drawing.
visualizer = dict(type='LZUSegLocalVisualizer')
