"""MovieLensRec-v0 through SB3's own entry points: make_vec_env, PPO, MaskablePPO, VecNormalize.

Budgets are a few hundred environment steps: these tests check that the pieces fit together
(spaces, render mode, masks, wrappers), not what is learned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import recsim_env  # noqa: F401  (registers MovieLensRec-v0)
from recsim_env import MovieLensRecEnv, Split

th.set_num_threads(1)

#: Tiny on-policy settings: 4 envs x 32 steps per rollout, 2 rollouts.
PPO_KWARGS = {"n_steps": 32, "batch_size": 64, "n_epochs": 1, "seed": 0, "device": "cpu"}
STEPS = 256


def test_make_vec_env_with_the_registered_id_and_ppo(
    ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's call, as is: SB3 asks for render_mode="rgb_array" and gets pictures."""
    monkeypatch.setenv("MOVIELENS_DATA", str(ml100k_dir))
    venv = make_vec_env("MovieLensRec-v0", n_envs=4, seed=0)
    assert isinstance(venv, DummyVecEnv) and venv.render_mode == "rgb_array"
    obs = venv.reset()
    assert obs["history"].shape == (4, 20) and obs["history"].dtype == np.int32
    # What VecVideoRecorder records: the 4 frames tiled 2 x 2 into one RGB image.
    image = venv.render()
    assert image.dtype == np.uint8 and image.shape == (2 * 96, 2 * 400, 3)
    np.testing.assert_array_equal(image[:96, :400], venv.envs[0].render())
    np.testing.assert_array_equal(image[96:, 400:], venv.envs[3].render())

    model = PPO("MultiInputPolicy", venv, **PPO_KWARGS).learn(STEPS)
    assert model.num_timesteps == STEPS
    # 64 steps per env > max_steps=50: every env finished an episode, seen by SB3's Monitor.
    lengths = [info["l"] for info in model.ep_info_buffer]
    assert len(lengths) >= 4 and max(lengths) <= 50


def test_maskable_ppo_reads_action_masks_through_make_vec_env(ml100k_split: Split) -> None:
    kwargs = {"split_data": ml100k_split}
    venv = make_vec_env("MovieLensRec-v0", n_envs=4, seed=0, env_kwargs=kwargs)
    model = MaskablePPO("MultiInputPolicy", venv, **PPO_KWARGS).learn(STEPS)
    assert model.num_timesteps == STEPS
    # The rollout stored the environments' masks (history items masked), and every action
    # taken was an allowed one.
    buffer = model.rollout_buffer
    masks = buffer.action_masks.reshape(buffer.buffer_size, buffer.n_envs, -1).astype(bool)
    actions = buffer.actions.reshape(buffer.buffer_size, buffer.n_envs).astype(np.int64)
    assert masks.shape[-1] == 1682 and (~masks).any(axis=-1).all()
    assert np.take_along_axis(masks, actions[..., None], axis=-1).all()

    obs = venv.reset()
    masks = get_action_masks(venv)
    np.testing.assert_array_equal(masks, np.stack([e.unwrapped.action_masks() for e in venv.envs]))
    action, _ = model.predict(obs, action_masks=masks, deterministic=True)
    assert masks[np.arange(4), action].all()


def test_vec_normalize_rewards_only_keeps_the_ids(ml100k_split: Split) -> None:
    """README advice: VecNormalize(venv, norm_obs=False); every observation field is ids or bits."""
    kwargs = {"split_data": ml100k_split}
    venv = make_vec_env("MovieLensRec-v0", n_envs=4, seed=0, env_kwargs=kwargs)
    normalized = VecNormalize(venv, norm_obs=False, norm_reward=True)
    obs = normalized.reset()
    assert obs["history"].dtype == np.int32 and obs["liked"].dtype == np.uint8
    model = PPO("MultiInputPolicy", normalized, **PPO_KWARGS).learn(STEPS)
    assert model.num_timesteps == STEPS and normalized.ret_rms.count > STEPS / 4
    obs = normalized.reset()
    single = MovieLensRecEnv(split_data=ml100k_split)
    for key in ("user", "history", "liked"):
        assert single.observation_space[key].contains(obs[key][0]), key  # untouched ids and bits
