"""The pinned kernel path: what is and is not bit-identical across machines (agents.kernel_path).

Same seed, config and thread count give bit-identical weights within one machine (see
tests/test_make_agent.py). Across machines, PyTorch's ATen and MKL kernels depend on the
processor; ``kernel_path="avx2"`` pins both to their AVX2 path. These tests check the pinning
itself in fresh processes; the effect on training is measured by ``experiments.studies.determinism``.
"""

import os
import subprocess
import sys

import pytest

from agents.kernel_path import pin_kernel_path


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)


def test_pinning_before_the_first_operation_selects_avx2_kernels():
    out = _python("import os, torch\nfrom agents.kernel_path import pin_kernel_path\n"
                  "print(pin_kernel_path('avx2'), os.environ['MKL_CBWR'], torch.randn(3).sum().item() is not None)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AVX2", "AVX2", "True"]


def test_pinning_after_torch_chose_other_kernels_is_an_error_naming_the_fix():
    out = _python("import torch\ntorch.randn(3).softmax(0)\nfrom agents.kernel_path import pin_kernel_path\n"
                  "import sys\ncap = torch.backends.cpu.get_cpu_capability()\n"
                  "try:\n    pin_kernel_path('avx2')\nexcept Exception as e:\n    print(cap, type(e).__name__, e)\n"
                  "else:\n    print(cap, 'pinned')")
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("AVX2 "):
        pytest.skip("this processor's native kernels are AVX2: nothing to change")
    assert "KernelPathError" in out.stdout and "ATEN_CPU_CAPABILITY=avx2" in out.stdout


def test_a_conflicting_environment_variable_and_an_unknown_path_are_refused(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX512")
    with pytest.raises(ValueError, match="needs MKL_CBWR=AVX2"):
        pin_kernel_path("avx2")
    with pytest.raises(ValueError, match="unknown"):
        pin_kernel_path("avx512")


def test_training_refuses_a_kernel_path_it_cannot_have():
    code = ("import sys, torch\ntorch.randn(3).softmax(0)\n"
            "if torch.backends.cpu.get_cpu_capability() == 'AVX2':\n    print('native AVX2'); sys.exit()\n"
            "from agents.config import make_config\nfrom agents.training import train, SetupError\n"
            "try:\n    train(make_config('default', total_timesteps=64))\n"
            "except SetupError as e:\n    print('SetupError', e)")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("native AVX2"):
        pytest.skip("this processor's native kernels are AVX2: nothing to refuse")
    if "SetupError" not in out.stdout:
        pytest.fail(f"train() ran on kernels it was not asked for: {out.stdout[-500:]}")
    assert "kernel_path='avx2'" in out.stdout
