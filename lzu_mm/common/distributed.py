"""PyTorch DDP on CPU-only machines with mmengine 0.10.7's Runner.

With ``--launcher pytorch`` mmengine's ``init_dist`` calls
``torch.cuda.set_device(LOCAL_RANK)`` (an ``AttributeError`` on a CPU-only
torch build) and the Runner wraps the model in DDP with
``device_ids=[LOCAL_RANK]`` (a ``ValueError`` for a CPU module). On a
machine without CUDA, :func:`setup_cpu_distributed` initialises the process
group itself (gloo; mmengine then skips its own ``init_dist``) and asks for
the DDP wrapper with ``device_ids=None``. With CUDA it does nothing.
"""
import torch
import torch.distributed as torch_dist


def setup_cpu_distributed(cfg) -> bool:
    """Prepare ``cfg`` (an mmengine ``Config``) for DDP on CPU; returns True if it did.

    Uses ``cfg.env_cfg.dist_cfg.backend`` unless it is ``'nccl'`` (GPU only),
    in which case gloo is used. Call it before building the Runner.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    if not torch_dist.is_initialized():
        backend = (cfg.get('env_cfg') or {}).get('dist_cfg', {}).get('backend', 'gloo')
        torch_dist.init_process_group(backend='gloo' if backend == 'nccl' else backend)
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    wrapper.setdefault('broadcast_buffers', False)  # as mmengine's default wrapper
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
