"""Test helper: read OpenMMLab model indexes once per test module instead of once per ``mmdet::`` base config.

mmengine's ``Config.fromfile`` resolves every ``mmdet::`` / ``mmseg::`` / ``mmdet3d::`` base by first looking it up
in the framework's model index, re-reading its hundreds of ``metafile.yml`` each time (about 0.3 s per base, 1-2 s
per config file on the CI's CPU). Tests that load every config of a family memoise those reads (the installed
package's files do not change while they run).
"""
import functools
from contextlib import contextmanager


@contextmanager
def cached_model_index():
    """Within the context, mmengine's config parser reads each YAML file once (a shared, read-only result)."""
    from mmengine.config import utils
    original = utils.load
    cached = functools.lru_cache(maxsize=None)(original)

    def load(file, *args, **kwargs):
        if isinstance(file, str) and file.endswith(('.yml', '.yaml')) and not args and not kwargs:
            return cached(file)
        return original(file, *args, **kwargs)

    utils.load = load
    try:
        yield
    finally:
        utils.load = original
