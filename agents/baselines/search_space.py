"""The search space of every tunable baseline, as plain data (see :mod:`agents.search_space`).

Each key is a keyword argument of the model's class (checked by
:func:`agents.search_space.search_space`); what a space leaves out keeps the class default.
Popularity has nothing to tune and no space.

The neural models search the same regime options, those that make LSRWRL's training
(:class:`~agents.baselines.sequential.SequentialRecommender`): windows ending at every
``window_stride``-th prefix (``None`` = the papers' non-overlapping cut), a constant or
decaying learning rate, the initial scale of the item embeddings (``None`` = the paper's
init), weight decay, and the training length in optimizer steps (batches of 128 windows;
about 20 steps make one epoch of the cut on ML-100K, 170 on ML-1M, and ``max_len`` times more
with ``window_stride=1``). Their papers' settings are points of these spaces.
"""

from __future__ import annotations

from agents.search_space import Space

#: The regime options every neural next-item model searches.
SEQUENCE_REGIME: Space = {
    "lr": ("loguniform", 1e-4, 1e-2),  # Adam step size
    "dim": ("choice", [32, 64, 128]),  # embedding / hidden size
    "dropout": ("uniform", 0.0, 0.5),
    "weight_decay": ("choice", [0.0, 1e-6, 1e-5, 1e-4]),  # Adam's L2 penalty
    "window_stride": ("choice", [None, 10, 1]),  # None: the papers' cut; 1: a window per prefix
    "lr_schedule": ("choice", ["constant", "linear", "cosine"]),  # decays go to 0
    "embedding_init_std": ("choice", [None, 0.01, 0.05, 0.1]),  # None: the paper's init
    "train_steps": ("logint", 250, 8_000),  # optimizer steps
}

#: Search space per baseline registry name.
SEARCH_SPACES: dict[str, Space] = {
    "itemcf": {
        "k": ("choice", [10, 20, 50, 100, 200, None]),  # neighbours per item (None: all)
        "shrinkage": ("uniform", 0.0, 100.0),  # shrunk cosine's lambda
    },
    "usercf": {
        "k": ("choice", [10, 20, 50, 100, 200, None]),  # neighbours per user (None: all)
        "shrinkage": ("uniform", 0.0, 100.0),
    },
    "ease": {
        "l2": ("loguniform", 10.0, 20_000.0),  # L2 lambda
    },
    "sasrec": {
        **SEQUENCE_REGIME,
        "max_len": ("choice", [20, 50, 100]),  # input sequence length
        "n_blocks": ("choice", [1, 2, 3]),  # self-attention blocks
    },
    "gru4rec": {
        **SEQUENCE_REGIME,
        "max_len": ("choice", [20, 50, 100]),
        "n_layers": ("choice", [1, 2]),  # stacked GRU layers
    },
    "stamp": {
        **SEQUENCE_REGIME,
        "max_len": ("choice", [10, 20, 50]),  # STAMP models short-term interest
    },
}
