"""Training configuration: one typed dataclass, named presets, validation, CLI overrides.

Every hyperparameter of a run lives in :class:`TrainConfig`; the run directory records it
in ``config.json``. Presets:

* ``"default"`` -- the configuration ``make train`` uses, chosen on the validation slice
  (``results/agent_tuning/``): vectorised SB3 DQN with double Q-learning, Huber loss, a dueling
  head tied to the item embeddings, masked exploration and in-network masking; the
  long/short-term encoder with a causal short-term part (last-position readout, relative
  positions, dropout 0.2, embeddings drawn from N(0, 0.05^2)); an auxiliary next-item loss at
  every position of 32 logged train windows per gradient step, 1,500 steps of it alone before
  DQN starts (pre-training), a learning rate decaying linearly to 0, 600,000 environment steps.
  On ML-1M it also takes :data:`ML1M_DEFAULT` (a 50-item history, 64-dimensional embeddings).
* ``"default-v1"`` -- the previous default (the paper's encoder, one logged pair per next-item
  sample, no pre-training, 1.8M steps), kept for comparison and as the base of ``searched``.
* ``"paper"`` -- the paper's settings (section 4): DQN, batch 128, gamma 0.9, learning rate
  0.01, target network updated every 50 environment steps, greedy with probability 0.9
  (epsilon fixed at 0.1), MSE loss (eq. 10), 1000 training episodes, an episode being one
  pass over all training users (the original text: "in every episode the agent recommends
  repeatedly to each user").
* ``"paper-1000-sessions"`` -- the same settings with 1000 single-user sessions instead of
  1000 passes (at most 50,000 steps, about 900 times less training): a shortened variant.

A *session* is one simulated user session of ``MovieLensRec-v0`` (Gymnasium's episode): from
``reset`` to termination (the user's targets are used up) or truncation (``max_steps``
recommendations), so it is at most ``max_steps`` environment steps. ``episode`` says what
``max_episodes`` counts: sessions, or passes (``"pass"``: every training user's session once,
in a shuffled order).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsim_env.dataset import DATASETS, RATING_SCALES  # the package's one list of dataset names
from recsim_env.interactions import DUPLICATE_POLICIES

#: Algorithms :mod:`agents.factory` can build around the extractor.
ALGOS: tuple[str, ...] = ("dqn", "qrdqn", "ppo", "a2c", "maskable_ppo")
#: Off-policy (replay-buffer) algorithms among :data:`ALGOS`.
OFF_POLICY_ALGOS: tuple[str, ...] = ("dqn", "qrdqn")
#: Replay buffers of the off-policy algorithms (as agents.replay.REPLAY_BUFFER_CLASSES; this
#: module stays free of torch, a test keeps the two in step).
REPLAY_BUFFERS: tuple[str, ...] = ("compact", "sb3")
SPLITS: tuple[str, ...] = ("temporal", "random")
LOSSES: tuple[str, ...] = ("huber", "mse")
#: Short-term position encodings and readouts (as agents.attention.POSITIONS / READOUTS; this
#: module stays free of torch, a test keeps the two in step).
POSITIONS: tuple[str, ...] = ("sinusoidal", "learned", "relative")
READOUTS: tuple[str, ...] = ("mean", "last")
#: Which interest vectors the extractor's features hold (as agents.extractor.INTERESTS).
INTERESTS: tuple[str, ...] = ("both", "long", "short")
#: Where the next-item loss is taken (as agents.supervised.NEXT_ITEM_POSITIONS).
NEXT_ITEM_POSITIONS: tuple[str, ...] = ("last", "all")
#: Softmax of the next-item loss: over every item, or the target against sampled negatives; "auto"
#: picks by the catalogue's size (:func:`large_catalogue`). As agents.supervised.NEXT_ITEM_SOFTMAXES.
NEXT_ITEM_LOSSES: tuple[str, ...] = ("auto", "full", "sampled")
#: How item-indexed terms are computed (:attr:`TrainConfig.item_compute`); "auto" picks by the
#: catalogue's size (:func:`large_catalogue`).
ITEM_COMPUTES: tuple[str, ...] = ("auto", "dense", "sparse")
#: Catalogue size (items) above which the ``"auto"`` settings (``next_item_loss``, ``item_compute``)
#: choose the computations whose cost per step does not grow with the catalogue: ML-100K (1,682),
#: ML-1M (3,706) and ML-10M (10,681) keep the full softmax and the dense terms, ML-20M (27,278) and
#: larger take the sampled softmax and the sparse terms. At 20,000 items the full softmax of 640
#: positions is already a 49 MiB logit matrix per step, forward and backward (docs/benchmarks.md).
LARGE_CATALOGUE: int = 20_000
#: Negatives of the sampled next-item softmax when ``next_item_negatives`` is None.
DEFAULT_NEXT_ITEM_NEGATIVES: int = 1024
#: Config fields that only some algorithms take, and which. Every other field applies to all
#: of them. Setting one of these explicitly for another algorithm is an error
#: (:func:`make_config`); a preset's value for it is not used (:meth:`TrainConfig.unused_fields`).
ALGO_FIELDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("buffer_size", "learning_starts", "train_freq", "gradient_steps", "target_update_interval",
                     "exploration_fraction", "exploration_initial_eps", "exploration_final_eps", "mask_actions",
                     "replay_buffer"),
                    OFF_POLICY_ALGOS),
    **dict.fromkeys(("dueling", "tied_item_embeddings", "double_q", "td_weight", "loss"), ("dqn",)),
    "n_quantiles": ("qrdqn",),
    **dict.fromkeys(("n_steps", "gae_lambda", "ent_coef", "vf_coef"), ("ppo", "a2c", "maskable_ppo")),
    **dict.fromkeys(("n_epochs", "clip_range"), ("ppo", "maskable_ppo")),
    "batch_size": ("dqn", "qrdqn", "ppo", "maskable_ppo"),
    "mask_excluded": ("dqn", "qrdqn", "ppo", "a2c"),
}
#: Policy networks: the LSRWRL extractor, or SB3's default policy on multi-hot observations.
POLICIES: tuple[str, ...] = ("lsrwrl", "multi_hot")
#: What one training episode is (the unit of max_episodes): one user session, or one pass over
#: every training user.
EPISODES: tuple[str, ...] = ("session", "pass")
#: The allowed values of the config's choice fields.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "algo": ALGOS, "dataset": DATASETS, "split": SPLITS, "loss": LOSSES, "positions": POSITIONS,
    "readout": READOUTS, "interests": INTERESTS, "next_item_positions": NEXT_ITEM_POSITIONS, "episode": EPISODES,
    "policy": POLICIES, "kernel_path": ("avx2", "native"), "replay_buffer": REPLAY_BUFFERS,
    "duplicates": DUPLICATE_POLICIES, "next_item_loss": NEXT_ITEM_LOSSES, "item_compute": ITEM_COMPUTES,
}
#: Fields that describe an interaction log (``data``): only taken with ``data`` set.
LOG_FIELDS: tuple[str, ...] = (
    "user_col", "item_col", "rating_col", "value_col", "timestamp_col", "user_feature_cols", "duplicates",
)
#: Fields of the LSRWRL extractor and of what needs it: not used with ``policy="multi_hot"``.
EXTRACTOR_FIELDS: tuple[str, ...] = (
    "embed_dim", "n_heads", "n_layers", "dropout", "dnn_hidden", "share_item_embeddings", "layer_norm", "causal",
    "readout", "positions", "feed_forward", "interests", "embedding_init_std", "next_item_weight",
    "next_item_positions", "next_item_batch", "pretrain_steps", "pretrain_batch", "dueling", "tied_item_embeddings",
    "mask_excluded", "next_item_loss", "next_item_negatives", "item_compute",
)
#: What ``policy="multi_hot"`` turns off in any preset (each needs the LSRWRL extractor).
MULTI_HOT_OFF: dict[str, Any] = dict(next_item_weight=0.0, pretrain_steps=0, dueling=False,
                                     tied_item_embeddings=False, mask_excluded=False)


@dataclass
class TrainConfig:
    """All settings of one training run (units in the comments; defaults = preset ``default``
    on ML-100K; :func:`make_config` adds a preset's per-dataset values)."""

    # --- run ---
    name: str = "lsrwrl"  # run directory prefix: <runs_dir>/<name>-<timestamp>
    preset: str = "default"  # preset the config started from (recorded, not used)
    algo: str = "dqn"  # the SB3 / sb3-contrib algorithm
    seed: int = 0  # seeds torch, numpy, the environments and SB3
    device: str = "cpu"  # torch device: "cpu", "cuda" or "auto"
    torch_threads: int = 2  # torch.set_num_threads during training (2 cores here: +34% steps/s over 1)
    # CPU kernels: "avx2" pins PyTorch's to AVX2 so a seed gives one result on any x86-64 processor
    # with AVX2; "native" uses the machine's fastest (results then depend on it; agents.kernel_path)
    kernel_path: str = "avx2"
    runs_dir: str = "runs"  # parent folder of run directories

    # --- data and environment (MovieLensRec-v0 arguments) ---
    dataset: str | None = "ml-100k"  # the MovieLens dataset (None with data: a log instead)
    # An interaction log (CSV or Parquet path, recorded absolute) to train on instead of a MovieLens
    # dataset (recsim_env.load_interactions; the run records its SHA-256 in data.json).
    data: str | None = None
    user_col: str | None = None  # data: column of the user ids (required with data)
    item_col: str | None = None  # data: column of the item ids (required with data)
    rating_col: str | None = None  # data: column of explicit ratings (None: implicit feedback, every row a like)
    value_col: str | None = None  # data, implicit feedback: column of each interaction's worth (None: 1)
    timestamp_col: str | None = None  # data: column of the times (None: the row order is the time order)
    user_feature_cols: tuple[str, ...] = ()  # data: columns of categorical user features (comma-separated)
    duplicates: str = "error"  # data: a repeated (user, item) pair is an "error", or keep its "last" or "first"
    data_dir: str | None = None  # root holding ml-100k/ and ml-1m/ (None: MOVIELENS_DATA, cache, download)
    expect_official: bool = True  # check ml-100k / ml-1m against the official figures (False: an edited copy)
    split: str = "temporal"  # "temporal" (chronological per user) or "random" per user
    train_ratio: float = 0.8  # fraction of each user's ratings in the train part
    split_seed: int = 0  # seed of the random split (unused by temporal)
    history_len: int = 20  # short-term window n (paper: 20)
    like_threshold: float | None = None  # a rating >= this is a like (None: the dataset's, 4 on MovieLens)
    # Reward of a consumed target in *training* envs, one per rating of the dataset's scale, lowest
    # first (1..5 on ML-100K/1M; None: the env's reward, rating/5 on a like, else 0; with data: None
    # unless given). Test envs always use the env's reward.
    train_rewards: tuple[float, ...] | None = (0.2, 0.4, 0.6, 0.8, 1.0)
    max_steps: int = 50  # recommendations per episode before truncation
    n_envs: int = 64  # parallel training environments (SB3 DummyVecEnv); transitions per vector step

    # --- budget ---
    total_timesteps: int = 600_000  # environment steps (transitions) to train for, upper bound
    max_episodes: int | None = None  # stop after this many finished episodes, all envs together
    # Unit of max_episodes: "session" (one user, reset to end) or "pass" (every training user's session
    # once, shuffled; the envs share the users; the paper's episode).
    episode: str = "session"
    # Optional wall-clock cap on training, s (validation included, all sessions of a resumed run
    # together). Off by default: a cap makes results depend on machine speed; a run it stops is
    # marked incomplete in metrics.json and in the printed report.
    max_train_seconds: float | None = None

    # --- policy network ---
    # "lsrwrl": the LSRWRL extractor (below) under the algorithm's heads; "multi_hot": SB3's default
    # MultiInputPolicy on recsim_env.MultiHotObservation-wrapped environments (a generic agent: no
    # extractor, next-item loss, pre-training, dueling head or in-network masking).
    policy: str = "lsrwrl"

    # --- extractor (agents.extractor.LongShortExtractor) and heads ---
    embed_dim: int = 32  # size d of item/user embeddings and of each interest vector
    n_heads: int = 1  # self-attention heads (must divide embed_dim)
    n_layers: int = 1  # stacked self-attention layers
    dropout: float = 0.2  # dropout in attention and the DeepFM DNN (paper: not stated; preset paper: 0)
    dnn_hidden: tuple[int, ...] = (128,)  # DeepFM DNN hidden sizes
    share_item_embeddings: bool = True  # one item table for the short- and long-term parts
    layer_norm: bool = True  # LayerNorm on the extractor output (stabilises Q-learning; paper: none)
    causal: bool = True  # short-term attention sees only earlier items (needed by next_item_positions=all; paper: no)
    readout: str = "last"  # short-term vector: "mean" over the history positions (paper) or "last" position
    positions: str = "relative"  # short-term positions: "sinusoidal" (paper), "learned" or "relative" (attention bias)
    feed_forward: bool = False  # short-term layers as SASRec blocks (residual, LayerNorm, feed-forward; paper: no)
    interests: str = "both"  # features: "both" interest vectors (paper), or "long" / "short" alone (ablation)
    embedding_init_std: float | None = 0.05  # std of the item/user embeddings' normal init (None: torch's 1.0)
    net_arch: tuple[int, ...] = (256,)  # hidden layers of the Q / policy / value heads

    # --- optimisation (all algorithms) ---
    learning_rate: float = 1e-3  # Adam step size (RMSprop for a2c, SB3's default)
    final_learning_rate: float | None = 0.0  # linear decay to this at total_timesteps (None: constant)
    batch_size: int = 128  # replay mini-batch (dqn/qrdqn) or PPO mini-batch
    gamma: float = 0.9  # reward discount (paper: 0.9)
    max_grad_norm: float = 10.0  # gradient clipping (global L2 norm)

    # --- off-policy: dqn, qrdqn ---
    buffer_size: int = 200_000  # replay capacity in transitions
    # Replay buffer: "compact" (agents.replay.CompactDictReplayBuffer: liked and excluded stored as item ids, a few
    # hundred bytes per transition at any catalogue size, samples identical to SB3's) or "sb3" (SB3's
    # DictReplayBuffer: every field twice per transition, 2 * ceil(n_items / 8) bytes for each packed set).
    replay_buffer: str = "compact"
    learning_starts: int = 5_000  # random-policy transitions before the first update
    train_freq: int = 1  # update every this many vector steps (each is n_envs transitions)
    gradient_steps: int = 1  # gradient steps per update
    target_update_interval: int = 10_000  # environment steps between target-network copies
    exploration_fraction: float = 0.03  # fraction of total_timesteps over which epsilon decays
    exploration_initial_eps: float = 1.0  # epsilon (random-action probability) at the start
    exploration_final_eps: float = 0.05  # epsilon after the decay
    dueling: bool = True  # dqn only: dueling Q-network head, V(s) + A(s, a) - mean_a A(s, a)
    tied_item_embeddings: bool = True  # dqn dueling head: A(s, a) = <u(s), item embedding of a> + b_a
    double_q: bool = True  # dqn only: double Q-learning target instead of eq. 9's max
    mask_actions: bool = True  # dqn/qrdqn: epsilon-greedy over action_masks() items only
    mask_excluded: bool = True  # in-network masking: predict, TD target max and scores skip obs["excluded"] items (not maskable_ppo)
    td_weight: float = 1.0  # dqn only: weight of the TD loss (0: no TD loss, the next-item loss alone; ablation)
    next_item_weight: float = 0.1  # weight of the auxiliary next-item loss added to the RL loss, every algo (0: off; dqn: needs dueling)
    # Next-item loss per sample: "last" = one logged (prefix, next item) pair, "all" = a window of
    # history_len logged items with a loss at every position, from one causal pass (needs causal).
    next_item_positions: str = "all"
    next_item_batch: int | None = 32  # samples (pairs or windows) per next-item batch (None: batch_size)
    pretrain_steps: int = 1_500  # gradient steps of the next-item loss alone before the first environment step, every algo
    pretrain_batch: int | None = None  # samples (pairs or windows) per pre-training step (None: next_item_batch)
    # Softmax of the next-item loss: "full" (over every item), "sampled" (the target against
    # next_item_negatives items drawn by popularity, logQ-corrected: its cost does not grow with the
    # catalogue), "auto" ("full" up to LARGE_CATALOGUE items, "sampled" above; resolved when the data
    # are loaded, and the run's config.json records the value used).
    next_item_loss: str = "auto"
    next_item_negatives: int | None = None  # sampled softmax: negatives per next-item batch, shared by its positions (None: 1024)
    # How item-indexed terms are computed: "dense" (the liked set as a (B, N) multi-hot, the TD loss
    # from every item's Q-value), "sparse" (the liked set pooled from its item ids; dqn: the TD loss
    # from the Q-values of the taken and the greedy next action only), equal up to float rounding;
    # "auto" ("dense" up to LARGE_CATALOGUE items, "sparse" above; resolved and recorded as next_item_loss).
    item_compute: str = "auto"
    loss: str = "huber"  # dqn only: TD loss "huber" (SB3's smooth L1) or "mse" (paper eq. 10)
    n_quantiles: int = 50  # qrdqn quantiles per action

    # --- on-policy: ppo, a2c, maskable_ppo ---
    n_steps: int = 128  # rollout length per environment between updates
    n_epochs: int = 4  # PPO passes over each rollout
    gae_lambda: float = 0.95  # GAE lambda
    ent_coef: float = 0.01  # entropy bonus
    vf_coef: float = 0.5  # value-loss weight
    clip_range: float = 0.2  # PPO ratio clip

    # --- evaluation, logging, checkpoints ---
    eval_freq: int = 50_000  # environment steps between validation evaluations (0: never)
    val_fraction: float = 0.2  # validation slice: last fraction of each user's train sequence
    eval_k: int = 10  # cut-off k of the ranking metrics
    checkpoint_freq: int = 250_000  # environment steps between checkpoints (0: only at the end)
    tune: bool = False  # train on the validation split's train part only (honest tuning)

    @property
    def data_name(self) -> str:
        """What the run trains on, for reports and run files: the dataset name or the log's path."""
        return self.data if self.data is not None else str(self.dataset)

    def unused_fields(self) -> list[str]:
        """The fields ``algo`` (and ``policy``) do not take (:data:`ALGO_FIELDS`,
        :data:`EXTRACTOR_FIELDS`): recorded, never used."""
        unused = [name for name, algos in ALGO_FIELDS.items() if self.algo not in algos]
        if self.policy == "multi_hot":
            unused += [name for name in EXTRACTOR_FIELDS if name not in unused]
        return unused

    def validate(self) -> TrainConfig:
        """Check every value; raise one ``ValueError`` listing all problems.

        :return: ``self`` (for chaining)
        """
        problems: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        for fname, choices in FIELD_CHOICES.items():
            value = getattr(self, fname)
            if fname == "dataset" and self.data is not None:
                need(value is None, f"dataset={value!r} and data={self.data!r} both name the data: give one")
                continue
            need(value in choices, f"{fname}={value!r} is unknown; choose one of {', '.join(choices)}")
        if self.data is not None:
            need(bool(self.user_col) and bool(self.item_col),
                 "data (an interaction log) needs user_col and item_col, the columns of the user and item ids")
            need(self.rating_col is None or self.value_col is None,
                 "rating_col (explicit ratings) and value_col (implicit feedback's worth) exclude each other")
            need(self.data_dir is None and self.expect_official,
                 "data_dir and expect_official=false apply to MovieLens datasets, not to data (an interaction log)")
        else:
            given = [f for f in LOG_FIELDS if getattr(self, f) != getattr(TrainConfig, f)]
            need(not given, f"{', '.join(given)} describe an interaction log: give data (its path) too, or drop them")
        need(self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
             f"device={self.device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
        need(bool(self.name) and "/" not in self.name, f"name={self.name!r} must be a non-empty file name")
        positive = (
            "torch_threads", "history_len", "max_steps", "n_envs", "total_timesteps", "embed_dim",
            "n_heads", "n_layers", "batch_size", "buffer_size", "train_freq", "target_update_interval",
            "n_quantiles", "n_steps", "n_epochs", "eval_k",
        )
        for fname in positive:
            value = getattr(self, fname)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{fname} must be a positive integer, got {value!r}")
        for fname in ("learning_starts", "eval_freq", "checkpoint_freq", "seed", "split_seed", "pretrain_steps"):
            value = getattr(self, fname)
            need(isinstance(value, int) and value >= 0, f"{fname} must be an integer >= 0, got {value!r}")
        need(self.gradient_steps == -1 or self.gradient_steps > 0,
             f"gradient_steps must be > 0 (or -1: one per collected transition), got {self.gradient_steps}")
        need(self.max_episodes is None or self.max_episodes > 0,
             f"max_episodes must be a positive integer or None, got {self.max_episodes}")
        need(self.max_train_seconds is None or self.max_train_seconds > 0,
             f"max_train_seconds must be > 0 or None, got {self.max_train_seconds}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.embedding_init_std is None or self.embedding_init_std > 0,
             f"embedding_init_std must be > 0 or None, got {self.embedding_init_std}")
        need(self.final_learning_rate is None or 0 <= self.final_learning_rate <= self.learning_rate,
             f"final_learning_rate must be None or in [0, learning_rate], got {self.final_learning_rate}")
        need(self.next_item_weight >= 0 and math.isfinite(self.next_item_weight),
             f"next_item_weight must be a finite number >= 0, got {self.next_item_weight}")
        need(self.td_weight >= 0 and math.isfinite(self.td_weight),
             f"td_weight must be a finite number >= 0, got {self.td_weight}")
        if self.algo == "dqn":
            need(self.td_weight > 0 or self.next_item_weight > 0,
                 "td_weight=0 and next_item_weight=0 leave no loss to train; set one of them > 0")
        if (self.next_item_weight > 0 or self.pretrain_steps) and self.algo == "dqn":
            need(self.dueling, "next_item_weight > 0 and pretrain_steps > 0 need dueling=True for dqn (they "
                 "train the dueling head's Q-values); set both to 0 or dueling=True")
        for fname in ("next_item_batch", "pretrain_batch"):
            value = getattr(self, fname)
            need(value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0),
                 f"{fname} must be a positive integer or None, got {value!r}")
        need(self.next_item_negatives is None or (isinstance(self.next_item_negatives, int)
                                                  and not isinstance(self.next_item_negatives, bool)
                                                  and self.next_item_negatives > 0),
             f"next_item_negatives must be a positive integer or None, got {self.next_item_negatives!r}")
        need(self.next_item_negatives is None or self.next_item_loss != "full",
             "next_item_negatives applies to the sampled next-item softmax; drop it or set next_item_loss=sampled")
        need(self.next_item_loss != "sampled" or self.next_item_weight > 0 or self.pretrain_steps > 0
             or self.policy == "multi_hot",
             "next_item_loss='sampled' has no next-item loss to apply to (next_item_weight=0 and pretrain_steps=0); "
             "drop it or turn the next-item loss on")
        if (self.next_item_weight > 0 or self.pretrain_steps) and self.next_item_positions == "all":
            need(self.causal, "next_item_positions='all' needs causal=True (the state after each position may "
                 "not see later items); set causal=true or next_item_positions=last")
        if self.policy == "multi_hot":
            on = [name for name, off in MULTI_HOT_OFF.items() if getattr(self, name) != off]
            need(not on, f"policy='multi_hot' (SB3's default policy) cannot take {', '.join(on)}: they need the "
                 "LSRWRL extractor; set policy=lsrwrl or turn them off")
        need(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1], got {self.gamma}")
        need(0.0 < self.train_ratio < 1.0, f"train_ratio must be in (0, 1), got {self.train_ratio}")
        need(0.0 < self.val_fraction < 1.0, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        scale = RATING_SCALES.get(self.dataset)
        scale_text = _scale_text(scale) if scale else ""
        if scale is not None and self.like_threshold is not None:
            need(isinstance(self.like_threshold, (int, float)) and not isinstance(self.like_threshold, bool)
                 and scale[0] <= self.like_threshold <= scale[-1],
                 f"like_threshold must be a rating in {scale_text}, got {self.like_threshold}")
        for fname in ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
                      "gae_lambda"):
            value = getattr(self, fname)
            need(0.0 <= value <= 1.0, f"{fname} must be in [0, 1], got {value}")
        for fname in ("max_grad_norm", "clip_range"):
            need(getattr(self, fname) > 0, f"{fname} must be > 0, got {getattr(self, fname)}")
        for fname in ("ent_coef", "vf_coef"):
            need(getattr(self, fname) >= 0, f"{fname} must be >= 0, got {getattr(self, fname)}")
        if self.train_rewards is not None:
            need(all(isinstance(r, (int, float)) and math.isfinite(r) for r in self.train_rewards),
                 f"train_rewards must be finite numbers, got {self.train_rewards!r}")
            if scale is not None:
                need(len(self.train_rewards) == len(scale),
                     f"train_rewards must be {len(scale)} finite numbers (rewards for ratings {scale_text} of "
                     f"{self.dataset}), got {self.train_rewards!r}")
        for fname in ("dnn_hidden", "net_arch"):
            value = getattr(self, fname)
            need(all(isinstance(h, int) and h > 0 for h in value),
                 f"{fname} sizes must be positive integers, got {value!r}")
        if self.embed_dim > 0 and self.n_heads > 0:
            need(self.embed_dim % self.n_heads == 0,
                 f"embed_dim={self.embed_dim} must be divisible by n_heads={self.n_heads}")
        if self.algo in OFF_POLICY_ALGOS:
            need(self.batch_size <= self.buffer_size,
                 f"batch_size={self.batch_size} exceeds buffer_size={self.buffer_size}")
        elif self.algo in ("ppo", "maskable_ppo"):
            rollout = self.n_steps * self.n_envs
            need(rollout > 1, f"n_steps * n_envs must be > 1 for PPO advantage normalisation, got {rollout}")
            need(self.batch_size <= rollout,
                 f"batch_size={self.batch_size} exceeds the PPO rollout n_steps*n_envs={rollout}; "
                 "lower batch_size or raise n_steps")
        if problems:
            raise ValueError("invalid training config:\n  - " + "\n  - ".join(problems))
        return self

    def for_catalogue(self, n_items: int) -> TrainConfig:
        """This config with its ``"auto"`` catalogue settings decided for ``n_items`` items
        (:func:`large_catalogue`): ``next_item_loss`` ``"full"`` or ``"sampled"`` (then
        ``next_item_negatives`` filled in; ``"full"`` without a next-item loss, where it is inert),
        ``item_compute`` ``"dense"`` or ``"sparse"``. What a run records and a model is built from;
        explicit values are kept.

        :param n_items: the catalogue (action-space) size
        :raises ValueError: ``next_item_negatives`` is set but the softmax resolves to ``"full"``
        """
        large = large_catalogue(n_items)
        uses_next_item = self.next_item_weight > 0 or self.pretrain_steps > 0
        loss = self.next_item_loss if self.next_item_loss != "auto" else (
            "sampled" if large and uses_next_item else "full")
        if loss == "full" and self.next_item_negatives is not None:
            raise ValueError(f"next_item_negatives={self.next_item_negatives} is set, but next_item_loss='auto' is "
                             f"the full softmax on {n_items:,} items (<= LARGE_CATALOGUE = {LARGE_CATALOGUE:,}); "
                             "set next_item_loss=sampled or drop next_item_negatives")
        negatives = self.next_item_negatives
        if loss == "sampled" and negatives is None:
            negatives = DEFAULT_NEXT_ITEM_NEGATIVES
        compute = self.item_compute if self.item_compute != "auto" else ("sparse" if large else "dense")
        return dataclasses.replace(self, next_item_loss=loss, next_item_negatives=negatives, item_compute=compute)

    def with_catalogue_of(self, saved: TrainConfig) -> TrainConfig:
        """This config with a run's catalogue settings (``saved``, its ``config.json``) wherever
        either side says ``"auto"``: how a resumed run compares its settings. ``"auto"`` is what
        the run decides from its data (a run recorded before these settings existed reads
        ``"auto"`` too), so it matches any decided value."""
        values: dict[str, Any] = {}
        if "auto" in (self.next_item_loss, saved.next_item_loss):
            values.update(next_item_loss=saved.next_item_loss, next_item_negatives=saved.next_item_negatives)
        if "auto" in (self.item_compute, saved.item_compute):
            values["item_compute"] = saved.item_compute
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        :param values: field name -> value (lists accepted for tuple fields)
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        cast = {k: tuple(v) if isinstance(v, list) and _holds_tuple(hints[k]) else v for k, v in values.items()}
        return cls(**cast)

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        """Read a ``config.json`` written by a run.

        Fields added since the run keep the behaviour it had: :data:`WRITTEN_BEFORE_THE_FIELD`.
        """
        with open(path, encoding="utf-8") as fh:
            values = json.load(fh)
        return cls.from_dict({**WRITTEN_BEFORE_THE_FIELD, **values})


#: The value a ``config.json`` written before a field existed means (the behaviour of then).
WRITTEN_BEFORE_THE_FIELD: dict[str, Any] = {"kernel_path": "native", "replay_buffer": "sb3"}


def catalogue_size(action_space: Any) -> int:
    """The number of items an action space recommends from: ``Discrete(n)``'s ``n``, a slate's
    (``MultiDiscrete``) largest ``nvec``."""
    n = getattr(action_space, "n", None)
    return int(n) if n is not None else int(max(action_space.nvec))


def large_catalogue(n_items: int) -> bool:
    """Whether the ``"auto"`` settings take the catalogue-scale computations for ``n_items``
    items: True above :data:`LARGE_CATALOGUE` (the one rule; the config, the extractor and the
    algorithms all apply it).

    :param n_items: the catalogue (action-space) size
    """
    return int(n_items) > LARGE_CATALOGUE


# Presets -----------------------------------------------------------------------------------

#: The paper's encoder (section 3.2) and training schedule where ``default`` departs from them:
#: one non-causal attention layer with sinusoidal positions, mean-pooled; PyTorch's embedding
#: init; no dropout; one logged pair per next-item sample; no pre-training; constant learning rate.
PAPER_ENCODER: dict[str, Any] = dict(
    causal=False,
    readout="mean",
    positions="sinusoidal",
    dropout=0.0,
    embedding_init_std=None,
    next_item_positions="last",
    next_item_batch=None,
    pretrain_steps=0,
    final_learning_rate=None,
)

#: Field overrides of each preset on top of the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": dict(
        preset="paper",
        name="lsrwrl-paper",
        n_envs=1,  # the paper collects experience from one user at a time
        batch_size=128,
        gamma=0.9,
        learning_rate=0.01,
        target_update_interval=50,
        # "epsilon-greedy parameter 0.9" = greedy with probability 0.9: a constant epsilon 0.1
        exploration_initial_eps=0.1,
        exploration_final_eps=0.1,
        exploration_fraction=0.0,
        loss="mse",  # eq. 10
        train_rewards=None,  # the environment's reward: rating / 5 on a like, else 0
        mask_actions=False,  # plain SB3 epsilon-greedy over all items
        mask_excluded=False,  # eq. 9: the max runs over all items
        dueling=False,  # one Q-value per item straight from the head (section 3.3)
        tied_item_embeddings=False,
        layer_norm=False,
        double_q=False,  # eq. 9
        next_item_weight=0.0,  # TD loss only (eq. 10)
        # 1000 episodes, each a pass over all training users ("每一回合中，对每位用户重复多次推荐").
        episode="pass",
        max_episodes=1000,
        # An upper bound only (1000 passes * 6,040 ML-1M users * 50 steps); max_episodes ends the run.
        total_timesteps=1000 * 6040 * 50,
        # Not given by the paper: SB3 defaults where they exist, else the project's choices.
        train_freq=4,  # "every few steps" (SB3's default)
        gradient_steps=1,
        learning_starts=100,  # SB3's default
        net_arch=(64, 64),  # SB3's default Q-network head
        **PAPER_ENCODER,
        max_grad_norm=10.0,  # SB3's default for DQN
        eval_freq=10_000,
        checkpoint_freq=25_000,
    ),
    # The default until issue 10's validation comparison (results/agent_tuning/): the paper's
    # encoder, one logged (prefix, next item) pair per next-item sample, no pre-training,
    # PyTorch's N(0, 1) embedding init, constant learning rate, 1.8M steps. The base of the
    # `searched` preset (its search ran on top of these settings).
    "default-v1": dict(
        preset="default-v1",
        name="lsrwrl-default-v1",
        **PAPER_ENCODER,
        total_timesteps=1_800_000,
    ),
}

#: Folder of preset files (``<name>.json``, written by :mod:`experiments.search`): each holds
#: ``"base_preset"`` and field ``"overrides"``; they join :data:`PRESETS` under their file name.
PRESET_DIR = Path(__file__).with_name("presets")


def load_preset_file(path: str | Path) -> dict[str, Any]:
    """The field overrides of one preset file, on top of its base preset.

    :raises ValueError: unreadable file, unknown base preset or unknown field (naming the file)
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        base, overrides = record.get("base_preset", "default"), dict(record["overrides"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"preset file {path}: expected JSON with an 'overrides' object ({exc})") from None
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if base not in PRESETS or unknown:
        raise ValueError(f"preset file {path}: base_preset {base!r} (known: {', '.join(PRESETS)}), "
                         f"unknown fields {unknown}; fix or remove the file")
    return {**PRESETS[base], **overrides, "preset": path.stem}


def _add_preset_files(folder: Path = PRESET_DIR) -> None:
    for path in sorted(folder.glob("*.json")):
        if path.stem in PRESETS:
            raise ValueError(f"preset file {path}: {path.stem!r} is a built-in preset name; rename the file")
        PRESETS[path.stem] = load_preset_file(path)


_add_preset_files()


#: The shortened variant: 1000 single-user sessions (at most 1000 * max_steps steps).
PRESETS["paper-1000-sessions"] = {
    **PRESETS["paper"], "preset": "paper-1000-sessions", "name": "lsrwrl-paper-1000-sessions",
    "episode": "session", "max_episodes": 1000, "total_timesteps": 1000 * 50,
}


#: ``default`` on ML-1M (``results/agent_tuning/ml-1m-*``, validation slice of the reconstructed
#: ML-1M, seed 0, 600,000 steps): the SASRec baseline's history length and embedding size. ML-1M
#: users rate 166 items on average (ML-100K: 106), and ML-1M has ten times the logged pairs.
ML1M_DEFAULT: dict[str, Any] = dict(history_len=50, embed_dim=64)

#: Per-dataset field values of a preset, chosen on that dataset's validation slice: applied by
#: :func:`make_config` after the preset and before the caller's overrides, so that
#: ``make train DATASET=ml-1m`` gets them and an explicit option still wins.
#: The default preset's training rewards on the half-star releases: rating / 5 for every consumed
#: target, as its (0.2, ..., 1.0) on whole stars (no setting of those releases was tuned).
HALF_STAR_TRAIN_REWARDS: dict[str, Any] = dict(train_rewards=tuple(r / 5 for r in RATING_SCALES["ml-10m"]))
DATASET_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {"ml-1m": ML1M_DEFAULT, **dict.fromkeys(("ml-10m", "ml-20m", "ml-25m", "ml-32m"), HALF_STAR_TRAIN_REWARDS)},
}


#: Per-algorithm field values of a preset (applied after its per-dataset values): where an
#: algorithm needs another value than the preset's DQN-oriented one.
#: Actor-critic algorithms: the next-item loss at weight 1 and no entropy bonus (the bonus pushes
#: the same logits towards uniform). PPO on the validation slice, seed 0, lr 3e-4, 100,000 steps
#: (results/agent_tuning/actor_critic_next_item/): precision@10 0.2024 and greedy return 3.53
#: against 0.1878 and 3.26 with the DQN values (weight 0.1, ent_coef 0.01). A2C and MaskablePPO
#: take the same values by analogy (not measured separately).
ACTOR_CRITIC_NEXT_ITEM: dict[str, Any] = dict(next_item_weight=1.0, ent_coef=0.0)
ALGO_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "ppo": ACTOR_CRITIC_NEXT_ITEM,
        "maskable_ppo": ACTOR_CRITIC_NEXT_ITEM,
        # A2C makes one gradient step per rollout of n_steps * n_envs transitions: SB3's n_steps=5
        # gives 1,875 updates (and next-item batches) in 600,000 steps, n_steps=128 would give 73.
        "a2c": {**ACTOR_CRITIC_NEXT_ITEM, "n_steps": 5},
        # 50 quantiles x 1,682 items make QR-DQN's head a 256 x 84,100 layer: 19x DQN's cost per step
        # (results/agent_tuning/qrdqn_quantiles/cost.txt); 10 quantiles cost 4.4x.
        "qrdqn": dict(n_quantiles=10),
    },
}


def check_algo_fields(algo: str, fields: Any) -> None:
    """Refuse fields ``algo`` does not take (:data:`ALGO_FIELDS`), naming each and the algorithms
    that take it.

    :param algo: the algorithm
    :param fields: the field names set explicitly
    :raises ValueError: one message listing every refused field
    """
    refused = [f for f in fields if f in ALGO_FIELDS and algo not in ALGO_FIELDS[f]]
    if refused:
        raise ValueError(f"algo={algo!r} does not take " + "; ".join(
            f"{f} (taken by {', '.join(ALGO_FIELDS[f])})" for f in refused) + ": drop it or choose such an algo")


def make_config(preset: str = "default", **overrides: Any) -> TrainConfig:
    """A validated config from a named preset plus field overrides.

    :param preset: a key of :data:`PRESETS`; its :data:`DATASET_PRESETS` values for the config's
        dataset, then its :data:`ALGO_PRESETS` values for the config's algorithm, are applied on
        top of it
    :param overrides: field name -> value, applied last. A field the algorithm does not take
        (:data:`ALGO_FIELDS`) is an error. With ``data`` (an interaction log) ``dataset`` becomes
        ``None`` (giving both is an error), ``data`` is made absolute, and ``train_rewards`` is
        ``None`` (the environment's reward) unless given: a preset's rewards are for 1..5 stars
    :raises ValueError: unknown preset or field, a field the algorithm does not take, or an
        invalid value
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        import difflib

        hints = [f"{name} (did you mean {', '.join(close)}?)" if (close := difflib.get_close_matches(
            name, [f.name for f in dataclasses.fields(TrainConfig)], n=2)) else name for name in unknown]
        raise ValueError(f"unknown setting {', '.join(hints)}; the settings are TrainConfig's fields")
    if overrides.get("data") is not None:
        if overrides.get("dataset") is not None:
            raise ValueError(f"dataset={overrides['dataset']!r} and data={overrides['data']!r} both name the "
                             "data: give one (a MovieLens dataset, or the path of an interaction log)")
        overrides = {"dataset": None, "train_rewards": None, **overrides,
                     "data": str(Path(overrides["data"]).expanduser().resolve())}
    dataset = overrides.get("dataset", PRESETS[preset].get("dataset", TrainConfig.dataset))
    algo = overrides.get("algo", PRESETS[preset].get("algo", TrainConfig.algo))
    if algo in ALGOS:  # an unknown one is reported by validate()
        check_algo_fields(algo, overrides)
    policy_off = MULTI_HOT_OFF if overrides.get("policy", PRESETS[preset].get("policy")) == "multi_hot" else {}
    values = {**PRESETS[preset], **DATASET_PRESETS.get(preset, {}).get(dataset, {}),
              **ALGO_PRESETS.get(preset, {}).get(algo, {}), **policy_off, **overrides}
    if preset == "paper-1000-sessions" and "max_steps" in overrides and "total_timesteps" not in overrides:
        values["total_timesteps"] = 1000 * int(overrides["max_steps"])
    return TrainConfig.from_dict(values).validate()


def _scale_text(scale: tuple[float, ...]) -> str:
    """``1..5`` for whole stars, ``0.5..5.0 (half stars)`` and so on."""
    step = "" if all(isinstance(r, int) for r in scale) else " in half stars"
    return f"{scale[0]}..{scale[-1]}{step}"


# CLI --------------------------------------------------------------------------------------


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _holds_tuple(tp: Any) -> bool:
    """A tuple type, or an optional one (``tuple[float, ...] | None``)."""
    return _is_tuple(tp) or (_is_optional(tp) and any(_is_tuple(a) for a in typing.get_args(tp)))


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _base_type(tp: Any) -> Any:
    if _is_optional(tp):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def parse_value(text: str, tp: Any, name: str) -> Any:
    """Parse one CLI string into a config field's type.

    ``none`` for optional fields; ``true/false/1/0/yes/no`` for booleans; comma-separated
    integers for tuples (empty string = empty tuple); ``1e-3`` and ``200_000`` are accepted.

    :param text: the command-line string
    :param tp: the field's type annotation
    :param name: field name (for the error message)
    :raises ValueError: the text does not parse
    """
    if _is_optional(tp) and text.strip().lower() in ("none", "null", ""):
        return None
    base = _base_type(tp)
    try:
        if base is bool:
            low = text.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if _is_tuple(base):
            item_type = typing.get_args(base)[0] if typing.get_args(base) else int
            return tuple(item_type(part) for part in text.replace(" ", "").split(",") if part)
        if base is int:
            number = float(text.replace("_", ""))
            if number != int(number):
                raise ValueError(text)
            return int(number)
        if base is float:
            return float(text.replace("_", ""))
        return text
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: cannot parse {text!r} as {base}") from None


def parse_overrides(items: Any, option: str = "--set") -> dict[str, Any]:
    """``FIELD=VALUE`` strings as :class:`TrainConfig` overrides, typed by the config's annotations.

    :param items: the strings
    :param option: the command-line option they came from (for the message)
    :raises ValueError: not ``FIELD=VALUE``, an unknown field, or a value that does not parse
    """
    hints = typing.get_type_hints(TrainConfig)
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in hints:
            raise ValueError(f"{option} {item!r}: expected FIELD=VALUE with a TrainConfig field name")
        overrides[key] = parse_value(value, hints[key], key)
    return overrides


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset`` and one ``--field-name VALUE`` option per :class:`TrainConfig` field.

    Options default to ``None`` (= keep the preset's value); see :func:`config_from_args`.
    """
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="named starting configuration (default: %(default)s)")
    hints = typing.get_type_hints(TrainConfig)
    comments = _field_comments()
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        extra = ""
        if f.name in FIELD_CHOICES:
            extra += f"; one of {', '.join(FIELD_CHOICES[f.name])}"
        if f.name in ALGO_FIELDS:
            extra += f"; algos: {', '.join(ALGO_FIELDS[f.name])}"
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            metavar=_metavar(hints[f.name]),
            help=f"{comments.get(f.name, '')} ({_default_label(f.name, getattr(defaults, f.name))}{extra})".replace("%", "%%"),
        )


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _default_label(name: str, default: Any) -> str:
    """``"default preset: 20; ml-1m: 50"``: field ``name``'s value in the default preset, with its
    per-dataset and per-algorithm replacements (:data:`DATASET_PRESETS`, :data:`ALGO_PRESETS`);
    the plain value is left out where every algorithm that takes the field replaces it."""
    parts = []
    replaced_algos: set[str] = set()
    for table in (DATASET_PRESETS.get("default", {}), ALGO_PRESETS.get("default", {})):
        keys_of: dict[str, list[str]] = {}
        for key, values in table.items():
            if name in values:
                keys_of.setdefault(_shown(values[name]), []).append(key)
                replaced_algos.add(key)
        parts += [f"{', '.join(keys)}: {shown}" for shown, keys in keys_of.items()]
    if not (name in ALGO_FIELDS and set(ALGO_FIELDS[name]) <= replaced_algos):
        parts.insert(0, _shown(default))
    return "default preset: " + "; ".join(parts)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the validated config from parsed :func:`add_config_arguments` options.

    :raises ValueError: a value does not parse or the resulting config is invalid
    """
    hints = typing.get_type_hints(TrainConfig)
    overrides = {}
    for f in dataclasses.fields(TrainConfig):
        text = getattr(args, f.name, None)
        if f.name != "preset" and text is not None:
            overrides[f.name] = parse_value(text, hints[f.name], f.name)
    return make_config(args.preset, **overrides)


def _metavar(tp: Any) -> str:
    base = _base_type(tp)
    if _is_tuple(base):
        return {(float,): "FLOATS", (str,): "NAMES"}.get(typing.get_args(base)[:1], "INTS")
    return {int: "INT", float: "FLOAT", bool: "BOOL"}.get(base, "STR")


def _field_comments() -> dict[str, str]:
    """Each field's comment in this file's source (for ``--help``).

    The comment after the field on its line; a field without one takes the ``#`` lines right
    above it (a longer explanation), joined. ``# --- section ---`` lines are headings, not help.
    """
    import inspect

    comments: dict[str, str] = {}
    block: list[str] = []
    for line in inspect.getsource(TrainConfig).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            block = [] if text.startswith("---") else [*block, text]
            continue
        if ":" in stripped and not stripped.startswith(("def", '"')):
            name = stripped.split(":", 1)[0].strip()
            if name.isidentifier():
                inline = stripped.split("  # ", 1)[1].strip() if "  # " in stripped else ""
                comments[name] = inline or " ".join(block)
        block = []
    return comments
