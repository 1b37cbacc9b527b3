"""The learning side: the recommended agent (:func:`make_agent`), its presets, the LSRWRL
interest encoder, the algorithms around it, the training loop, item scoring.

Torch-based names are imported lazily on first access, so ``import agents.baselines`` (numpy
models) does not pay for torch and Stable-Baselines3.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "LongShortExtractor": "agents.extractor",
    "unpack_liked_bits": "agents.extractor",
    "ShortTermEncoder": "agents.attention",
    "MaskedSelfAttention": "agents.attention",
    "DeepFM": "agents.deepfm",
    "make_agent": "agents.make",
    "pin_kernel_path": "agents.kernel_path",
    "TrainConfig": "agents.config",
    "make_config": "agents.config",
    "PRESETS": "agents.config",
    "train": "agents.training",
    "evaluate_model": "agents.evaluate",
    "LSRDQN": "agents.dqn",
    "LSRQRDQN": "agents.dqn",
    "LSRPPO": "agents.actor_critic",
    "LSRA2C": "agents.actor_critic",
    "LSRMaskablePPO": "agents.actor_critic",
    "ALGORITHMS": "agents.factory",
    "algorithm_class": "agents.factory",
    "build_model": "agents.factory",
    "make_policy_kwargs": "agents.factory",
    "LoggedNextItems": "agents.next_item",
    "score_observations": "agents.scoring",
    "make_score_fn": "agents.scoring",
    "greedy_return": "agents.scoring",
    "CompactDictReplayBuffer": "agents.replay",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
