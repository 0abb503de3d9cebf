# FOVEA's learned KDE ("LKDE SI") with LZU at 0.5x: the adaptive config with the KDE's bandwidth and amplitude
# learned. As FOVEA's LearnedKDEGrid (fovea/models/grid_generator.py): scale = |1 + p| * init + 0.1 with p a
# parameter initialised to 0, init 64 (bandwidth) and 1 (amplitude) (configs/models/learned_kde_grid.py).
# Everything else as retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py.
_base_ = './retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py'

model = dict(adaptive=dict(learned=True))

# FOVEA experiments/LKDE_SI.sh: --gridnet-lr-mult 0.005 --gridnet-wd-mult 0.0 for the KDE parameters
# (model.lzu_saliency.bandwidth / .amplitude).
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'lzu_saliency': dict(lr_mult=0.005, decay_mult=0.)}))
