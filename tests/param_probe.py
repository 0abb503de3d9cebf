"""A test-only mmengine hook: what each training iteration did to a model's parameters under a prefix.

Configs used by end-to-end tests load it through ``custom_imports=dict(imports=['tests.param_probe'])``
(``tools/train.py`` puts the repository root on ``sys.path``). For every iteration it records, per parameter
whose name starts with ``prefix``, whether the optimiser step changed it and the gradient it received (finite,
sum of absolute values; ``None`` when no gradient reached it), as JSON in ``out_file``; the parameters before
the first iteration (after ``init_weights`` and ``load_from``) go to ``out_file + '.init.pth'``.
"""
import functools
import json

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class LearnedParamProbe(Hook):

    def __init__(self, out_file: str, prefix: str = 'lzu_'):
        self.out_file = out_file
        self.prefix = prefix
        self.iterations = []

    def _params(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return {n: p for n, p in model.named_parameters() if n.startswith(self.prefix)}

    def _grad(self, name, grad):
        self._grads[name] = dict(finite=bool(torch.isfinite(grad).all()), abs_sum=float(grad.abs().sum()))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        params = self._params(runner)
        self._before = {n: p.detach().clone() for n, p in params.items()}
        if not self.iterations:
            torch.save(self._before, self.out_file + '.init.pth')
        self._grads = {}
        self._handles = [p.register_hook(functools.partial(self._grad, n)) for n, p in params.items()]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        for handle in self._handles:
            handle.remove()
        record = {n: dict(changed=not torch.equal(self._before[n], p.detach()), grad=self._grads.get(n))
                  for n, p in self._params(runner).items()}
        self.iterations.append(record)
        with open(self.out_file, 'w') as f:
            json.dump(self.iterations, f)
