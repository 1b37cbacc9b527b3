"""Which CPU kernels PyTorch adds floats with: pinned so a seed gives one result on any x86-64.

PyTorch picks its CPU kernels at run time from the processor: ATen's vectorised element-wise
and reduction kernels (AVX-512 or AVX2 on x86-64) and MKL's matrix products. Different
kernels add in different orders, so the same seed, config and thread count trains to different
weights on an AVX-512 and an AVX2 machine, and the gap grows over a run
(``python -m experiments.studies.determinism``, ``results/determinism/``: both ATen's and MKL's
choice change the weights).

``kernel_path="avx2"`` (the :class:`~agents.config.TrainConfig` default) pins both to their
AVX2 code path, which x86-64 processors have had since Intel Haswell (2013) and AMD Excavator (2015): ``ATEN_CPU_CAPABILITY=avx2`` and
``MKL_CBWR=AVX2`` (MKL's conditional numerical reproducibility). ``"native"`` keeps the
machine's fastest kernels. The variables only act when set before PyTorch runs its first
operation (ATen) and its first matrix product (MKL): :func:`pin_kernel_path` sets them and
checks ATen's choice; MKL's cannot be read back, so a process that ran matrix products before
must set ``MKL_CBWR`` itself, before Python starts.

What stays machine-dependent: the thread count (``torch_threads``; the parallel reductions are
split per thread), processors without AVX2, and other operating systems or PyTorch builds.
"""

from __future__ import annotations

import os

#: ``kernel_path`` values and the environment each sets.
KERNEL_PATHS: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
    "native": {},
}


class KernelPathError(RuntimeError):
    """The kernel path asked for is not the one PyTorch runs with."""


def pin_kernel_path(path: str) -> str:
    """Make PyTorch use the kernels of ``path``; return ATen's CPU capability now in use.

    Sets the variables of :data:`KERNEL_PATHS` ``[path]`` where they are unset (values set by
    you are kept and checked), then checks ATen's capability.

    :param path: ``"avx2"`` or ``"native"``
    :raises ValueError: unknown path, or an environment variable set to another value
    :raises KernelPathError: PyTorch already runs other kernels (it ran an operation before the
        variable was set), or the processor has no AVX2
    """
    if path not in KERNEL_PATHS:
        raise ValueError(f"kernel_path={path!r} is unknown; choose one of {', '.join(KERNEL_PATHS)}")
    for name, value in KERNEL_PATHS[path].items():
        current = os.environ.setdefault(name, value)
        if current.lower() != value.lower():
            raise ValueError(f"kernel_path={path!r} needs {name}={value}, but the environment has "
                             f"{name}={current}: unset it, or use kernel_path='native'")
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if path == "avx2" and capability != "AVX2":
        raise KernelPathError(
            f"kernel_path='avx2', but PyTorch already runs {capability} kernels: it chose them at its first "
            "operation, before ATEN_CPU_CAPABILITY was set (or this processor has no AVX2). Start Python with "
            "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 in the environment, or call agents.pin_kernel_path('avx2') "
            "before any torch operation, or pass kernel_path='native' (results then depend on the processor)")
    return capability
