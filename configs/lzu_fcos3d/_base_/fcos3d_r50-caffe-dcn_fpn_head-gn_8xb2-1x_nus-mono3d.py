# FCOS3D as in LZU §5.3 / Table 5: ResNet-50 + FPN with DCNv2 in the last two stages (stage_with_dcn of the
# mmdet3d base), 12 epochs ("1x"), batch 16 (8 GPUs x 2), everything else MMDetection3D's FCOS3D nuScenes defaults
# (the R101 config below; only the depth and its ImageNet weights change).
_base_ = 'mmdet3d::fcos3d/fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py'

custom_imports = dict(imports=['lzu_mm.mmdet3d'], allow_failed_imports=False)

# ResizedFCOSMono3D = FCOSMono3D decoding 3D boxes with the intrinsics of the resized test image (FCOSMono3D's
# rescale divides the 2D centres by scale_factor but back-projects with the already scaled cam2img).
# ImageNet weights torchvision://resnet50, lr 0.001: the LZU authors' released FCOS3D configs (tchittesh/lzu
# configs/{lzu_,}fcos3d_*.py; mmdet3d's R101 config has 0.002 and caffe weights).
model = dict(
    type='ResizedFCOSMono3D',
    backbone=dict(depth=50, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
optim_wrapper = dict(optimizer=dict(lr=0.001))

# Batch 16 in total: train with tools/dist_train.sh CONFIG 8 (or set train_dataloader.batch_size and
# --auto-scale-lr on fewer GPUs; base_batch_size=16 comes from the mmdet 1x schedule).
auto_scale_lr = dict(enable=False, base_batch_size=16)
