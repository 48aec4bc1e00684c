#!/usr/bin/env bash
# Create .venv (or $VENV) and install medsynth into it, keeping a torch the user already has.
#   bash scripts/setup_env.sh
# - If the Python that runs this already imports torch (e.g. a GPU user installed their own
#   CUDA build), the venv sees it (--system-site-packages) and pip keeps it.
# - Otherwise torch and torchvision are installed together, so pip picks a matched pair.
#   On the project's machines that is torch 2.14.1 + torchvision 0.29.1 from local disk.
# - torchvision is pinned against the torch in use so pip never swaps torch under the user.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
cd "$(dirname "$0")/.."
stamp="$VENV/.medsynth-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
if "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "[setup] keeping the torch already installed: $("$PYTHON" -c 'import torch; print(torch.__version__)')"
  "$PYTHON" -m venv --system-site-packages "$VENV"
else
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing torch + torchvision (a matched pair)"
  $PIP install -q torch torchvision
elif ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
  version=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
  echo "[setup] installing a torchvision that matches torch $version"
  $PIP install -q torchvision "torch==$version"
fi
$PIP install -q -e ".[dev]"
touch "$stamp"
echo "[setup] ready: $("$VENV/bin/python" -c 'import torch, torchvision, monai; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, monai {monai.__version__}")')"
