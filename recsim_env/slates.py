"""Slates: an environment's validated slate settings and the user's examination draw.

The response rule (which examined items are consumed) is the replay user's, stated in
:mod:`recsim_env.replay_user`; only the replayed user answers slates.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from recsim_env.replay_user import ReplaySimulator
from recsim_env.user_simulator import UserSimulator, check_int

__all__ = ["DEFAULT_EXAMINE", "RESPONSES", "SlateResponse", "slate_settings"]

#: How the user responds to a slate (see :class:`SlateResponse`).
RESPONSES: tuple[str, ...] = ("independent", "cascade")
#: Default ``examine`` of the ``"cascade"`` response: the probability of going on to the next
#: position after one without a like (position ``i`` is examined with ``examine ** (i - 1)``).
DEFAULT_EXAMINE: float = 0.8


class SlateResponse:
    """The validated slate settings of an environment and the user's examination draw.

    One place checks ``slate_size``, ``response`` and ``examine`` for the single and the
    vector environment. The response rule itself is
    :meth:`~recsim_env.replay_user.ReplaySimulator.step_slate`.

    :param slate_size: items per recommendation, ``1 <= slate_size <= n_items`` (default 1: the
        single-item environment)
    :param response: ``"independent"`` (the user examines every position) or ``"cascade"``
        (position ``i``, 1-based, examined with probability ``examine ** (i - 1)``; the user
        stops after the first like)
    :param examine: ``"cascade"`` only: probability in ``[0, 1]`` of going on to the next
        position (default :data:`DEFAULT_EXAMINE`); must be ``None`` for ``"independent"``
    :param n_items: number of items of the dataset (the largest slate)
    """

    def __init__(
        self, slate_size: int, response: str, examine: float | None, n_items: int
    ) -> None:
        self.slate_size = check_int("slate_size", slate_size, 1, n_items)
        if response not in RESPONSES:
            raise ValueError(f"response must be one of {list(RESPONSES)}, got {response!r}")
        self.response: str = response
        if response == "independent":
            if examine is not None:
                raise ValueError(
                    "examine only applies to response='cascade' (independent: every position "
                    f"is examined); got examine={examine!r}: drop it or set response='cascade'"
                )
            self.examine: float | None = None
        else:
            if examine is None:
                examine = DEFAULT_EXAMINE
            if isinstance(examine, (bool, np.bool_)) or not isinstance(
                examine, (int, float, np.integer, np.floating)
            ) or not 0.0 <= float(examine) <= 1.0:
                raise ValueError(
                    f"examine must be a probability in [0, 1] (cascade: position i is examined "
                    f"with probability examine ** (i - 1)), got {examine!r}"
                )
            self.examine = float(examine)
        #: the cascade stops at the first like; the independent response consumes every target.
        self.stop_at_like: bool = response == "cascade"
        # Position i (0-based) is examined iff u < examine ** i for one uniform u per step, so
        # examining i implies examining every earlier position (the cascade).
        self._powers = (
            None if self.examine is None else self.examine ** np.arange(self.slate_size, dtype=np.float64)
        )

    def depth(self, rng: np.random.Generator) -> int:
        """Positions the user is willing to examine this step (``"cascade"``: one ``rng.random()``).

        :param rng: the episode's generator (the env's ``np_random``); not used by
            ``"independent"``
        """
        if self._powers is None:
            return self.slate_size
        return int(np.count_nonzero(rng.random() < self._powers))

    def depth_batch(self, rngs: list[np.random.Generator], rows: np.ndarray) -> np.ndarray:
        """int64 ``(len(rngs),)``: :meth:`depth` for the sub-envs ``rows``, ``slate_size`` elsewhere.

        Only the generators of ``rows`` are drawn from, so each sub-env's generator follows
        exactly a single environment's.

        :param rngs: one generator per sub-env
        :param rows: indices of the sub-envs that step (not the ones being reset)
        """
        depth = np.full(len(rngs), self.slate_size, dtype=np.int64)
        if self._powers is not None:
            for i in rows.tolist():
                depth[i] = np.count_nonzero(rngs[i].random() < self._powers)
        return depth


def slate_settings(
    simulator: UserSimulator, slate_size: int, response: str, examine: float | None
) -> tuple[SlateResponse, spaces.Space]:
    """The validated :class:`SlateResponse` of an environment on ``simulator`` and its action space.

    Shared by the single and the vector environment: ``Discrete(n_items)`` for one item per
    step, ``MultiDiscrete([n_items] * k)`` for slates, which only the replayed user answers.

    :raises ValueError: bad slate settings, or ``slate_size > 1`` with a learned user model
    """
    slate = SlateResponse(slate_size, response, examine, simulator.n_items)
    if slate.slate_size > 1 and not isinstance(simulator, ReplaySimulator):
        raise ValueError(
            f"slate_size={slate.slate_size} needs user_model='replay' (the slate responses are "
            f"defined for the replayed user); user_model={simulator.user_model!r} takes one item "
            "per step"
        )
    n = simulator.n_items
    space: spaces.Space = (
        spaces.Discrete(n) if slate.slate_size == 1
        else spaces.MultiDiscrete(np.full(slate.slate_size, n, dtype=np.int64))
    )  # fmt: skip
    return slate, space
