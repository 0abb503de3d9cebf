# LZU with the fixed saliency released by the LZU authors for nuScenes FCOS3D (LZU §5.3, Table 5):
# a kernel density estimate over the projected 2D boxes of the nuScenes training set, a (1, 1, 27, 48) tensor.
# Put it at data/nuscenes/nuscenes_fixed_saliency.pkl (README: "MMDetection3D: LZU FCOS3D on nuScenes"), or make
# one with tools/saliency/box_kde_saliency.py from data/nuscenes/nuscenes_infos_train.pkl.
# LZ hyper-parameters, all from the authors' release for this experiment: grid_shape 27x48 (the saliency's
# shape), attraction_fwhm=10 (grid cells), separable warp, anti-crop.
lzu_zoom = dict(
    saliency='data/nuscenes/nuscenes_fixed_saliency.pkl',
    grid_shape=(27, 48),
    separable=True,
    attraction_fwhm=10.,
    anti_crop=True)

# Pack3DDetInputs' default meta_keys (MMDetection3D 1.4) plus the LZ grid record, the flip direction and the
# homography (the model mirrors the grid of a sample flipped after zooming and refuses other changes).
lzu_meta_keys = ('img_path', 'ori_shape', 'img_shape', 'lidar2img', 'depth2img', 'cam2img', 'pad_shape',
                 'scale_factor', 'flip', 'pcd_horizontal_flip', 'pcd_vertical_flip', 'box_mode_3d', 'box_type_3d',
                 'img_norm_cfg', 'num_pts_feats', 'pcd_trans', 'sample_idx', 'pcd_scale_factor', 'pcd_rotation',
                 'pcd_rotation_angle', 'lidar_path', 'transformation_3d_flow', 'trans_mat', 'affine_aug',
                 'sweep_img_metas', 'ori_cam2img', 'cam2global', 'crop_offset', 'img_crop_offset',
                 'resize_img_shape', 'lidar2cam', 'ori_lidar2img', 'num_ref_frames', 'num_views', 'ego2global',
                 'axis_align_matrix', 'flip_direction', 'lzu_zoom', 'homography_matrix')
