"""The simulator module: the one home of the simulated user's rules, shared by every consumer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from recsim_env import DATASETS, ReplaySimulator, Split


def test_both_envs_and_the_sampler_share_one_simulator_and_one_list_of_datasets(
    ml100k_split: Split,
) -> None:
    from agents.next_item import LoggedNextItems
    from agents import config
    from experiments import bench_env
    from recsim_env import download

    env = gym.make("MovieLensRec-v0", split_data=ml100k_split)
    vec = gym.make_vec("MovieLensRec-v0", num_envs=2, vectorization_mode="vector_entry_point",
                       split_data=ml100k_split)
    assert isinstance(env.unwrapped.simulator, ReplaySimulator)
    assert isinstance(vec.unwrapped.simulator, ReplaySimulator)
    assert LoggedNextItems(env).simulator is env.unwrapped.simulator
    # One tuple of names: the loader's sources, the scripts' choices and the env's check.
    assert config.DATASETS is bench_env.DATASETS is DATASETS
    assert tuple(download.SOURCES) == DATASETS


def test_prefix_observations_reach_past_the_last_valid_start(ml100k_split: Split) -> None:
    """Logged states after the last liked train item exist; up to it they equal the starts."""
    sim = ReplaySimulator(split_data=ml100k_split, mode="train")
    users = sim.users[:50]
    prefixes = sim.max_prefix[users]
    np.testing.assert_equal(sim.prefix_observations(users, prefixes),
                            sim.start_observations(users, prefixes))
    longest = np.asarray(sim.n_train[users])
    past = longest > prefixes
    assert past.any()
    obs = sim.prefix_observations(users[past], longest[past])
    for row, (u, p) in enumerate(zip(users[past], longest[past])):
        items, _ = ml100k_split.train_of(int(u))
        assert obs["history"][row, -1] == items[p - 1] + 1  # the last train item is the newest


def test_environments_on_one_split_share_their_simulator_and_stay_independent(ml100k_split: Split) -> None:
    """Envs built on the same split with the same settings hold one (read-only) simulator, so a
    64-env training vector holds the catalogue-sized tables once; their episodes stay their own."""
    import gymnasium as gym

    def make(**overrides):
        return gym.make("MovieLensRec-v0", split_data=ml100k_split, max_steps=5, **overrides)

    a, b = make(), make()
    assert a.unwrapped.simulator is b.unwrapped.simulator
    assert make(history_len=3).unwrapped.simulator is not a.unwrapped.simulator
    assert make(mode="test").unwrapped.simulator is not a.unwrapped.simulator
    assert make(reward_map={4: 0.5, 5: 1.0}).unwrapped.simulator is not a.unwrapped.simulator
    # Interleaved episodes of the sharing envs = the same episodes of an env of its own.
    alone = gym.make("MovieLensRec-v0", split_data=ml100k_split, max_steps=5, history_len=20, like_threshold=None)
    assert alone.unwrapped.simulator is a.unwrapped.simulator  # the defaults spelled out: same settings
    solo_obs, _ = make().reset(seed=3)
    obs_a, _ = a.reset(seed=3)
    b.reset(seed=4)
    for action in range(ml100k_split.n_items)[:4]:
        b.step(action)
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], solo_obs[key])


#: Where each name of ``recsim_env.simulator`` lives since the module was split, one job each.
HOMES = {
    "recsim_env.rewards": ("RATINGS", "default_reward_map", "check_like_threshold", "reward_table"),
    "recsim_env.episode_state": ("EpisodeState", "BatchState", "concatenated_ranges"),
    "recsim_env.slates": ("SlateResponse", "slate_settings", "RESPONSES", "DEFAULT_EXAMINE"),
    "recsim_env.user_simulator": ("UserSimulator", "MODES", "check_int", "load_split"),
    "recsim_env.replay_user": ("ReplaySimulator",),
    "recsim_env.model_user": ("ModelSimulator",),
    "recsim_env.simulator": ("make_simulator",),
}


def test_simulator_module_still_exports_every_name_it_defined_before_the_split() -> None:
    """``from recsim_env.simulator import X`` keeps working, and gives the one object of X's
    home module (a copy would break ``isinstance`` and the shared cache)."""
    import importlib

    import recsim_env
    from recsim_env import simulator

    names = [name for module_names in HOMES.values() for name in module_names]
    assert sorted(simulator.__all__) == sorted(names)
    for module, module_names in HOMES.items():
        home = importlib.import_module(module)
        for name in module_names:
            assert getattr(simulator, name) is getattr(home, name), (name, module)
    for name in ("ReplaySimulator", "ModelSimulator", "UserSimulator", "make_simulator"):
        assert getattr(recsim_env, name) is getattr(simulator, name)


def test_each_simulator_module_imports_first_without_a_cycle_or_torch() -> None:
    """Any of the simulator's modules can be the first one imported (an import cycle fails
    for some order), and none pulls in torch or ray."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import importlib, sys\n"
        f"for module in {sorted(HOMES)!r}:\n"
        "    for name in [m for m in sys.modules if m == 'recsim_env' or m.startswith('recsim_env.')]:\n"
        "        del sys.modules[name]\n"
        "    importlib.import_module(module)\n"
        "    assert 'torch' not in sys.modules and 'ray' not in sys.modules, module\n"
    )
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, timeout=120)
