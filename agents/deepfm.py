"""Long-term interest: DeepFM over the user-feature fields and the liked-item field (eqs. 6-8).

Shapes use ``B`` = batch, ``F`` = number of fields (one per user feature and the liked items;
4 on MovieLens: gender, age, occupation, liked items; 1 without user features), ``d`` =
embedding size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch as th
from torch import nn


def bi_interaction(fields: th.Tensor) -> th.Tensor:
    """Second-order FM term as a vector: ``sum_{i<j} v_i * v_j`` (element-wise products).

    Computed in ``O(F d)`` as ``0.5 * ((sum_i v_i)^2 - sum_i v_i^2)``; summing its ``d``
    entries gives eq. 6's scalar ``sum_{i<j} <v_i, v_j>``.

    :param fields: ``(B, F, d)`` field vectors ``v_i x_i``
    :return: ``(B, d)``
    """
    total = fields.sum(dim=1)
    return 0.5 * (total * total - (fields * fields).sum(dim=1))


class DeepFM(nn.Module):
    """DeepFM (Guo et al., 2017) producing a ``d``-dimensional long-term interest vector.

    Inputs are ``F`` fields, each given as a latent vector ``v_i x_i`` of size ``d`` (for a
    categorical field: the embedding of its code, ``x_i = 1``; for the liked-item field: the
    mean of the liked items' embeddings) and a first-order weight ``w_i x_i`` (a scalar).

    * FM part (eq. 6, as a vector): ``y_FM = (w_0 + sum_i w_i x_i) * 1_d + sum_{i<j} v_i * v_j``;
      the first-order sum is a scalar broadcast over the ``d`` outputs, the second order is
      the bi-interaction vector (:func:`bi_interaction`).
    * DNN part (eq. 7): an MLP over the concatenated field vectors, ``F*d -> hidden... -> d``,
      ReLU (and dropout) between layers, linear output so it can be added to ``y_FM``.
    * Output (eq. 8): ``y_FM + y_DNN``, shape ``(B, d)``.

    :param n_fields: number of fields ``F``
    :param dim: field vector size ``d``
    :param hidden: hidden layer sizes of the DNN part (default ``(128,)``; empty = linear)
    :param dropout: dropout probability after each hidden layer (default 0.0)
    """

    def __init__(self, n_fields: int, dim: int, hidden: Sequence[int] = (128,), dropout: float = 0.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(th.zeros(1))  # w_0
        layers: list[nn.Module] = []
        size = n_fields * dim
        for width in hidden:
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        layers.append(nn.Linear(size, dim))
        self.dnn = nn.Sequential(*layers)

    def forward(self, fields: th.Tensor, first_order: th.Tensor) -> th.Tensor:
        """:param fields: ``(B, F, d)`` field vectors ``v_i x_i``
        :param first_order: ``(B, F)`` first-order terms ``w_i x_i``
        :return: ``(B, d)`` long-term interest ``y_FM + y_DNN``
        """
        linear = self.bias + first_order.sum(dim=1, keepdim=True)  # (B, 1)
        y_fm = linear + bi_interaction(fields)
        y_dnn = self.dnn(fields.flatten(start_dim=1))
        return y_fm + y_dnn
