# Makes the checkout importable for pytest without installing it (CI installs it anyway),
# and runs tests marked `cuda` only where a CUDA device exists (tools/gpu_check.sh selects
# them with -m cuda).
import pytest


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _hide_modules():
    """SPS_HIDE_MODULES=soundfile,pyworld makes those imports fail, to run the suite as on
    a machine without them (the GPU machines have neither)."""
    import os
    import sys
    hidden = [m for m in os.environ.get("SPS_HIDE_MODULES", "").split(",") if m]
    for name in hidden:
        sys.modules[name] = None   # `import name` now raises ModuleNotFoundError


_hide_modules()
