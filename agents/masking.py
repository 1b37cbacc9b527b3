"""In-network masking: the item scores the agent acts on skip the items the observation excludes.

``MovieLensRec-v0`` observations carry ``"excluded"`` (packed bits: the episode's whole history
and every item recommended this episode; ``env.action_masks()`` is its complement). A network
built with ``mask_excluded=True`` (see :func:`agents.factory.build_model`) replaces the Q-value
(or policy logit) of every excluded item by :data:`MASKED_VALUE` wherever the value *chooses*
an item: the greedy action of ``predict``, the greedy part of epsilon-greedy, the ``max`` (and
double-Q ``argmax``) of the TD target, the ranking scores and the next-item softmax. The value
regressed by the TD loss, ``Q(s, a)`` of the action taken, is never masked, so it stays finite
even for an excluded action that unmasked exploration took.
"""

from __future__ import annotations

from typing import Any

import torch as th

from agents.extractor import packed_item_indices, unpack_bits

#: Score given to excluded items: finite (as sb3-contrib's ``MaskableCategorical``), so softmax,
#: entropy and differences stay finite, and far below any learned Q-value or logit.
MASKED_VALUE: float = -1e8


def excluded_items(observations: dict[str, th.Tensor], n_items: int) -> th.Tensor:
    """Bool ``(B, n_items)``: the items that cannot be recommended in each observation.

    A row in which every item is excluded is returned all False: nothing can be avoided there
    (the environment's masks are advisory), so its scores are left as they are.

    :param observations: Dict observation tensors with the packed ``"excluded"`` field
    :param n_items: number of items (the action-space size)
    :raises KeyError: the observation has no ``"excluded"`` field
    """
    if "excluded" not in observations:
        raise KeyError(
            "mask_excluded needs the 'excluded' observation field of MovieLensRec-v0 "
            f"(got keys {sorted(observations)}); build the model with mask_excluded=False otherwise"
        )
    excluded = unpack_bits(observations["excluded"], n_items)
    return excluded & ~excluded.all(dim=1, keepdim=True)


def excluded_indices(observations: dict[str, th.Tensor], n_items: int) -> tuple[th.Tensor, th.Tensor]:
    """The excluded items of each observation as ``(row, item)`` pairs: the set entries of
    :func:`excluded_items`, found from the packed bytes without a ``(B, n_items)`` matrix.

    :param observations: Dict observation tensors with the packed ``"excluded"`` field
    :param n_items: number of items (the action-space size)
    :return: ``(rows, items)``, int64 ``(K,)`` each; a row in which every item is excluded has
        no pairs (as in :func:`excluded_items`)
    :raises KeyError: the observation has no ``"excluded"`` field
    """
    if "excluded" not in observations:
        excluded_items(observations, n_items)  # raises the KeyError
    packed = observations["excluded"]
    rows, items = packed_item_indices(packed, n_items)
    if rows.numel():
        everything = th.bincount(rows, minlength=packed.shape[0]) == n_items
        if bool(everything.any()):
            keep = ~everything[rows]
            rows, items = rows[keep], items[keep]
    return rows, items


def mask_excluded(values: th.Tensor, observations: dict[str, th.Tensor]) -> th.Tensor:
    """``values`` with every excluded item's entry set to :data:`MASKED_VALUE` (not in place).

    Only the excluded entries are written (:func:`excluded_indices`): no ``(B, n_items)`` mask is
    built, so the cost beyond the copy of ``values`` grows with the excluded items, not the
    catalogue.

    :param values: ``(B, n_items)`` scores, or ``(B, ..., n_items)`` (e.g. QR-DQN quantiles
        ``(B, n_quantiles, n_items)``): items on the last axis
    :param observations: the Dict observation tensors the values were computed from
    :return: tensor shaped like ``values``
    """
    rows, items = excluded_indices(observations, values.shape[-1])
    out = values.clone()
    out[(rows, *([slice(None)] * (values.dim() - 2)), items)] = MASKED_VALUE
    return out


def acting_values(net: Any, values: th.Tensor, observations: dict[str, th.Tensor]) -> th.Tensor:
    """The scores ``net`` acts on: ``values`` masked when ``net.mask_excluded`` is set.

    :param net: a Q-network, quantile network or policy (SB3's own ones have no
        ``mask_excluded`` and are never masked)
    :param values: scores computed by ``net`` from ``observations``, items on the last axis
    :param observations: Dict observation tensors
    """
    return mask_excluded(values, observations) if getattr(net, "mask_excluded", False) else values
