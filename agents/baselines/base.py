"""The common interface of the non-RL baselines, and the name -> class registry.

Every baseline is a :class:`Recommender`: ``fit(split)`` learns from the **train part** of a
:class:`~recsim_env.dataset.Split` only, ``score(users)`` returns one float32 row of scores
over all item indices per user (higher = recommend first). Ranking, exclusion of train items
and the metrics are left to the shared evaluator :func:`recsim_env.evaluation.evaluate_ranking`:
``evaluate_ranking(model.score, split)``.

The registry maps a short name to ``"module:Class"`` and imports lazily, so that importing
:mod:`agents.baselines` never imports torch (only the neural models need it).
"""

from __future__ import annotations

import abc
import importlib
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsim_env.dataset import Split

#: Registered baselines: name -> ``"module:Class"`` (imported on first use).
_REGISTRY: dict[str, str] = {
    "popularity": "agents.baselines.popularity:PopularityRecommender",
    "itemcf": "agents.baselines.itemcf:ItemCFRecommender",
    "usercf": "agents.baselines.usercf:UserCFRecommender",
    "ease": "agents.baselines.ease:EASERecommender",
    "sasrec": "agents.baselines.sasrec:SASRecRecommender",
    "gru4rec": "agents.baselines.gru4rec:GRU4RecRecommender",
    "stamp": "agents.baselines.stamp:STAMPRecommender",
}


class Recommender(abc.ABC):
    """A recommender fitted on a train split that scores every item for a batch of users.

    Subclasses take their hyperparameters as keyword arguments of ``__init__`` (stored under
    the same attribute names, so :meth:`get_params` can report them) and implement
    :meth:`fit` and :meth:`score`.
    """

    #: Registry name of the model (set by each subclass).
    name: str = ""

    def __init__(self) -> None:
        self.split_: Split | None = None

    @abc.abstractmethod
    def fit(self, split: Split) -> Recommender:
        """Learn from the train part of ``split`` (never its test part).

        :param split: the split to learn from; only ``train_*`` arrays are read
        :return: ``self``
        """

    @abc.abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for a batch of users.

        :param users: user indices, int array ``(B,)``
        :return: float32 array ``(B, n_items)``, finite; higher means recommend earlier
        """

    def score_states(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of every item in a batch of ``MovieLensRec-v0`` states: the model as a policy.

        The state is what the observation holds: the ``"history"`` tokens (the last
        ``history_len`` consumed items) and the ``"liked"`` set, not the user's id, so a policy
        follows the episode (a like changes the next recommendation).
        :func:`recsim_env.evaluate_greedy` ``(model.score_states, env)`` then recommends, at each
        step, the top-scored item the observation allows.

        :param observations: Dict observation batch (leading axis ``B``)
        :return: float32 ``(B, n_items)``; higher means recommend earlier
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score environment states")

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters of the model (the keyword arguments of ``__init__``)."""
        return {n: getattr(self, n) for n in init_param_names(type(self)) if hasattr(self, n)}

    def _fitted_split(self) -> Split:
        if self.split_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(split) first.")
        return self.split_

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def init_param_names(cls: type[Recommender]) -> list[str]:
    """Names of the keyword arguments a recommender class accepts, its own first, then those
    its ``**kwargs`` pass on to base classes.

    :param cls: a :class:`Recommender` subclass
    """
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            named = p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            if named and p.name != "self" and p.name not in names:
                names.append(p.name)
    return names


def interaction_matrix(split: Split) -> sp.csr_matrix:
    """Binary user x item matrix of the train part of ``split`` (implicit feedback).

    Every train rating counts as one interaction whatever its value: the test items the
    evaluator scores against are all rated items, liked or not, so "rated" is the signal
    to predict.

    :param split: the split; only ``train_indptr`` / ``train_items`` are read
    :return: float32 CSR ``(n_users, n_items)`` with 1.0 where the user rated the item in train
    """
    indptr = np.asarray(split.train_indptr, dtype=np.int64)
    items = np.asarray(split.train_items, dtype=np.int64)
    x = sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), items, indptr),
        shape=(split.n_users, split.n_items),
    )
    x.sum_duplicates()
    x.data[:] = 1.0  # a re-rated item still counts once
    return x


class InsufficientMemoryError(MemoryError):
    """A model's estimated peak memory exceeds what is available: raised before allocating it.

    A :class:`MemoryError`, so code that already guards against running out of memory catches
    it; unlike an allocation failure it comes before the machine starts swapping or the kernel
    kills the process, and its message names the matrix, the sizes and the fix.

    :param message: what needs the memory and how to do without it
    :param needed_bytes: estimated peak, bytes
    :param available_bytes: :func:`available_memory_bytes` at the time of the check
    """

    def __init__(self, message: str, needed_bytes: int, available_bytes: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


def available_memory_bytes() -> int:
    """Memory this process can still allocate, bytes.

    Linux: ``MemAvailable`` of ``/proc/meminfo`` (free memory plus reclaimable cache), capped by
    the limit of the process's memory cgroup (a container's limit: v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``, less the cgroup's usage other than its inactive file cache).
    Elsewhere ``os.sysconf`` free pages (``SC_AVPHYS_PAGES``), or, where the system does not say,
    the physical memory (``SC_PHYS_PAGES``): an upper bound, so a model that can never fit still
    fails early.
    """
    available = _meminfo_available()
    if available is None:
        page = os.sysconf("SC_PAGE_SIZE")
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * page
        except (ValueError, OSError):
            available = os.sysconf("SC_PHYS_PAGES") * page
    for limit, usage, stat, cache_key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
         "total_inactive_file"),  # cgroup v1
    ):
        try:
            root = Path("/sys/fs/cgroup")
            text = (root / limit).read_text().strip()
            if text == "max":
                continue
            stats = dict(line.split() for line in (root / stat).read_text().splitlines() if line.count(" ") == 1)
            used = int((root / usage).read_text()) - int(stats.get(cache_key, 0))
            available = min(available, max(int(text) - used, 0))
        except (OSError, ValueError):
            continue
    return int(available)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def require_memory(needed_bytes: int, what: str, fix: str) -> None:
    """Raise :class:`InsufficientMemoryError` when ``needed_bytes`` exceed
    :func:`available_memory_bytes` (checked before a model allocates its large matrices).

    :param needed_bytes: estimated peak memory, bytes
    :param what: the model and the matrix that need it (starts the message)
    :param fix: how to do without it (ends the message)
    """
    available = available_memory_bytes()
    if needed_bytes > available:
        raise InsufficientMemoryError(
            f"{what} needs about {needed_bytes / 1e9:,.1f} GB of memory; {available / 1e9:,.1f} GB is "
            f"available. {fix}",
            needed_bytes,
            available,
        )


def state_items(observations: dict[str, np.ndarray], n_items: int) -> np.ndarray:
    """The items of a state, for the item-based models: the liked set and the history window.

    :param observations: Dict observation batch with ``"history"`` (tokens = item + 1, 0 =
        padding) and ``"liked"`` (packed bits)
    :param n_items: number of items
    :return: float32 ``(B, n_items)`` with 1.0 on the state's items
    """
    from recsim_env import unpack_bits

    items = unpack_bits(observations["liked"], n_items, "liked").astype(np.float32)
    history = np.asarray(observations["history"], dtype=np.int64)
    rows, cols = np.nonzero(history > 0)
    items[rows, history[rows, cols] - 1] = 1.0
    return items


def register(name: str, target: str | type[Recommender]) -> None:
    """Register a baseline under ``name``.

    :param name: registry key, lower case
    :param target: the class, or ``"module:Class"`` to import lazily
    """
    if not isinstance(target, str):
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[name] = target


def available_recommenders() -> list[str]:
    """Names of the registered baselines, in registration order."""
    return list(_REGISTRY)


def get_recommender_class(name: str) -> type[Recommender]:
    """The class registered under ``name`` (imports its module on first use).

    :param name: a name from :func:`available_recommenders`
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"Unknown baseline {name!r}; available: {', '.join(available_recommenders())}."
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def make_recommender(name: str, **params: Any) -> Recommender:
    """Build the baseline registered under ``name`` with the given hyperparameters.

    :param name: a name from :func:`available_recommenders`
    :param params: keyword arguments of the class's ``__init__``
    """
    return get_recommender_class(name)(**params)
