# Argoverse-HD dataset settings (Li, Wang, Ramanan, "Towards Streaming Perception", ECCV 2020):
# COCO-format boxes over 1920x1200 Argoverse 1.1 tracking video, 8 classes, evaluated with mmdet's CocoMetric.
# Composes mmdet's own COCO dataset settings; the pipelines are set by each config (they depend on the scale).
# Layout (see README "MMDetection: LZU RetinaNet on Argoverse-HD"):
#   data/Argoverse/Argoverse-1.1/tracking/{train,val}/<sequence>/ring_front_center/*.jpg
#   data/Argoverse/Argoverse-HD/annotations/{train,val}.json
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

custom_imports = dict(imports=['lzu_mm.mmdet'], allow_failed_imports=False)

dataset_type = 'ArgoverseHDDataset'
data_root = 'data/Argoverse/'
img_prefix = 'Argoverse-1.1/tracking/'  # the json's seq_dirs are relative to it

train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='Argoverse-HD/annotations/train.json',
        data_prefix=dict(img=img_prefix)))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type, data_root=data_root, ann_file='Argoverse-HD/annotations/val.json',
        data_prefix=dict(img=img_prefix)))
test_dataloader = val_dataloader

# AP, AP50, AP75, AP_S/M/L and per-class AP
val_evaluator = dict(ann_file=data_root + 'Argoverse-HD/annotations/val.json', metric='bbox', classwise=True)
test_evaluator = val_evaluator
