#!/usr/bin/env bash
# One-command, idempotent setup of the lzu-mm environment.
#
#   bash tools/setup_env.sh
#
# Creates (or reuses) the virtual environment at $LZU_VENV (default: .venv in the
# repository root), installs the pinned stack and lzu_mm in editable mode.
# pip's wheel cache is reused, so only the first run compiles mmcv (~8 min on 2 cores).
# Set LZU_TORCH_SPEC to pick another torch (e.g. a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LZU_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_SPEC=${LZU_TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check "$@"; }

# any pip >= 21.3 installs lzu_mm through pyproject.toml (PEP 660); no upper pin needed
pip_install -q --upgrade pip
pip_install -q $TORCH_SPEC
# after torch: torch pulls in a recent setuptools, mmcv's setup.py needs pkg_resources (setuptools<70);
# the same setuptools then builds lzu_mm (pyproject.toml, PEP 660 editable) without build isolation
pip_install -q -c requirements/constraints.txt -r requirements/build.txt
# mmcv 2.1.0 with compiled ops, built against the torch above (cached wheel after first build).
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '2.1.0')" 2>/dev/null; then
  echo "[setup] installing mmcv 2.1.0 from source (first run compiles for ~8 minutes)"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} pip_install --no-build-isolation -c requirements/constraints.txt "mmcv==2.1.0"
fi
pip_install -q -c requirements/constraints.txt -r requirements/runtime.txt -r requirements/mminstall.txt \
  -r requirements/tests.txt
pip_install -q --no-build-isolation --no-deps -e .
"$VENV/bin/python" - <<'PY'
import torch, mmengine, mmcv, mmcv.ops, mmdet, mmseg, mmdet3d, lzu_mm
print(f"[setup] ok: torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmdet3d {mmdet3d.__version__}, lzu_mm {lzu_mm.__version__}")
PY
