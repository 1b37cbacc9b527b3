"""Networks and policies the algorithms of :mod:`agents.factory` put around the LSRWRL extractor.

Each is SB3's own network or policy with one addition: in-network masking of the items the
observation excludes (``mask_excluded``, :mod:`agents.masking`), a dueling Q-head whose item
advantages can be tied to the extractor's item embeddings (:class:`DuelingQNetwork`), and the
item logits the supervised next-item loss trains (:mod:`agents.supervised`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn
from sb3_contrib.qrdqn.policies import QRDQNPolicy, QuantileNetwork
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork

from agents.masking import MASKED_VALUE, acting_values, excluded_indices, mask_excluded

class MaskedQNetwork(QNetwork):
    """SB3's Q-network whose greedy action never picks an item the observation excludes.

    With ``mask_excluded`` the Q-values of items set in the observation's ``"excluded"`` field
    are replaced by :data:`agents.masking.MASKED_VALUE` in :meth:`_predict` (so
    ``model.predict(obs, deterministic=True)`` never repeats an item or recommends a history
    item) and wherever :func:`agents.masking.acting_values` is applied (the TD target of
    :class:`LSRDQN`, item scores); ``forward`` itself returns the raw Q-values, which the TD
    loss regresses.

    :param mask_excluded: mask excluded items when choosing (default False: SB3's behaviour)
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_excluded = bool(mask_excluded)

    def _predict(self, observation: Any, deterministic: bool = True) -> th.Tensor:
        return acting_values(self, self(observation), observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class MaskedDQNPolicy(DQNPolicy):
    """SB3's DQN policy (Dict observations) with :class:`MaskedQNetwork` as online and target net.

    :param mask_excluded: see :class:`MaskedQNetwork` (default False)
    :param kwargs: :class:`~stable_baselines3.dqn.policies.DQNPolicy` arguments
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        self.mask_excluded = bool(mask_excluded)  # read by make_q_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> MaskedQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return MaskedQNetwork(**net_args, mask_excluded=self.mask_excluded).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class DuelingQNetwork(MaskedQNetwork):
    """Dueling Q-network head (Wang et al., 2016): ``Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)``.

    In this environment a missed recommendation leaves the state unchanged, so every item's
    Q-value carries a large shared term ``gamma * V(s)``; with a plain head each item's output
    row must learn that term on its own from the rare samples of that item, whereas the value
    stream ``V`` (an MLP with ``net_arch`` hidden layers) learns it from every sample and the
    advantages only rank the items.

    Advantage stream: an MLP over the features with ``n_items`` outputs, or, with
    ``tied_item_embeddings``, ``A(s, a) = <u(s), E[a + 1]> + b_a`` where ``u`` is an MLP to size
    ``d`` and ``E`` the extractor's item embedding table (``(n_items + 1, d)``, the one the
    history tokens use): every item's score then moves whenever its embedding is trained, not
    only when that item was the action.

    :param tied_item_embeddings: score items through the extractor's item embeddings
    :param kwargs: :class:`MaskedQNetwork` arguments (``mask_excluded``...)
    """

    def __init__(self, *args: Any, tied_item_embeddings: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # self.q_net becomes the advantage stream
        self.tied_item_embeddings = tied_item_embeddings
        self.value_net = nn.Sequential(*create_mlp(self.features_dim, 1, self.net_arch, self.activation_fn))
        if tied_item_embeddings:
            table = getattr(self.features_extractor, "item_embedding", None)
            if not isinstance(table, nn.Embedding):
                raise ValueError("tied_item_embeddings needs a features extractor with an item_embedding table")
            dim = table.embedding_dim
            self.q_net = nn.Sequential(*create_mlp(self.features_dim, dim, self.net_arch, self.activation_fn))
            # Start from A = 0 so that the N(0, 1) embeddings add no random initial ranking.
            nn.init.zeros_(self.q_net[-1].weight)
            nn.init.zeros_(self.q_net[-1].bias)
            self.item_bias = nn.Parameter(th.zeros(int(self.action_space.n)))
        # Temperature of LSRDQN's next-item loss: logits = exp(log_logit_scale) * Q.
        # Q differences are a fraction of a reward, softmax logits need a few units.
        self.log_logit_scale = nn.Parameter(th.tensor(float(np.log(10.0))))

    def forward(self, obs: Any) -> th.Tensor:
        """:return: Q-values ``(B, n_items)``"""
        return self.q_values(self.extract_features(obs, self.features_extractor))

    def q_values(self, features: th.Tensor) -> th.Tensor:
        """Q-values ``(M, n_items)`` of states given by their features ``(M, features_dim)``."""
        advantage = self.advantages(features)
        return self.value_net(features) + advantage - advantage.mean(dim=1, keepdim=True)

    def advantages(self, features: th.Tensor, items: th.Tensor | None = None) -> th.Tensor:
        """The advantage stream ``A(s, .)``, ``(M, n_items)``, before centring: the Q-values up to
        a per-state constant, so any softmax over items gives the same result on either.

        :param features: ``(M, features_dim)``
        :param items: int64 ``(K,)``: only these items' advantages, ``(M, K)`` (default: every item)
        """
        if items is not None:
            hidden, weight, bias = self.item_layer(features)
            return F.linear(hidden, weight[items], bias[items])
        if self.tied_item_embeddings:
            items = self.features_extractor.item_embedding.weight[1:]  # (n_items, d), token = item + 1
            return self.q_net(features) @ items.T + self.item_bias
        return self.q_net(features)

    def item_layer(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The advantage stream as ``hidden @ weight.T + bias``: ``(hidden (M, h), weight (n_items, h),
        bias (n_items,))``; tied: ``u(s)``, the item embeddings and the item biases."""
        if self.tied_item_embeddings:
            return self.q_net(features), self.features_extractor.item_embedding.weight[1:], self.item_bias
        return _last_linear(self.q_net, features)

    def next_item_logits(self, features: th.Tensor, items: th.Tensor | None = None) -> th.Tensor:
        """Logits ``(M, n_items)`` of the next-item softmax: ``c * A(s, .)`` with the learned
        temperature ``c`` (``softmax(c * Q) = softmax(c * A)``: ``V(s)`` and the mean advantage
        are per-state constants, and the advantages take fewer ``(M, n_items)`` operations).

        :param items: int64 ``(K,)``: only these items' logits, ``(M, K)`` (default: every item)
        """
        return self.advantages(features, items) * self.log_logit_scale.exp()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "tied_item_embeddings": self.tied_item_embeddings}


def _last_linear(mlp: nn.Sequential, features: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """``(hidden, weight, bias)`` of an MLP whose last layer is linear: ``mlp(x) = hidden @ weight.T + bias``."""
    *body, last = mlp
    if not isinstance(last, nn.Linear):
        raise TypeError(f"the item scores' last layer must be nn.Linear, got {type(last).__name__}")
    return (nn.Sequential(*body)(features) if body else features), last.weight, last.bias


def item_layer(net: QNetwork, features: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """A Q-network's item scores as one linear map, ``hidden @ weight.T + bias`` (``(M, h)``,
    ``(n_items, h)``, ``(n_items,)``): the Q-values of SB3's :class:`QNetwork` and of
    :class:`MaskedQNetwork`, the advantages of :class:`DuelingQNetwork`."""
    if isinstance(net, DuelingQNetwork):
        return net.item_layer(features)
    return _last_linear(net.q_net, features)


def _centred(net: QNetwork, features: th.Tensor, hidden: th.Tensor, weight: th.Tensor, bias: th.Tensor,
             scores: th.Tensor) -> th.Tensor:
    """Q-values from item scores of :func:`item_layer`: ``V(s) + A - mean_a A(s, a)`` for the
    dueling head (the mean from the mean item row: no ``(M, n_items)`` term), as they are otherwise."""
    if not isinstance(net, DuelingQNetwork):
        return scores
    mean = hidden @ weight.mean(dim=0) + bias.mean()  # (M,)
    return net.value_net(features).squeeze(-1) + scores - mean


def action_q_values(net: QNetwork, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """``Q(s, a)`` of one action per state, ``(M,)``, in ``O(h)`` per state instead of every item's
    Q-value (equal to ``net.q_values``/``forward`` at those actions up to float rounding).

    :param net: SB3's :class:`QNetwork`, :class:`MaskedQNetwork` or :class:`DuelingQNetwork`
    :param features: extractor features ``(M, features_dim)``
    :param actions: int64 ``(M,)`` item indices
    """
    hidden, weight, bias = item_layer(net, features)
    scores = (hidden * weight[actions]).sum(dim=1) + bias[actions]
    return _centred(net, features, hidden, weight, bias, scores)


def greedy_q_values(net: QNetwork, features: th.Tensor, observations: Any) -> tuple[th.Tensor, th.Tensor]:
    """The greedy action and its Q-value per state, ``((M,), (M,))``, over the items the network
    acts on (:func:`agents.masking.acting_values`). The dueling head ranks by its advantages
    alone (``V`` and the mean advantage are per-state constants), so only one ``(M, n_items)``
    matrix is formed.

    :param net: as :func:`action_q_values`
    :param features: extractor features of ``observations``
    :param observations: the Dict observation tensors (their ``"excluded"`` field when masking)
    """
    hidden, weight, bias = item_layer(net, features)
    excluded = excluded_indices(observations, weight.shape[0]) if getattr(net, "mask_excluded", False) else None
    best, actions = best_items(hidden, weight, bias, excluded)
    return actions, _centred(net, features, hidden, weight, bias, best)


def item_q_values(net: QNetwork, features: th.Tensor, observations: Any) -> th.Tensor:
    """Every item's Q-value ``(M, n_items)`` as the network acts on them (masked with
    ``mask_excluded``), written into one matrix: no temporaries of that size (``forward`` and
    :func:`~agents.masking.acting_values` make three or four). Equal to them up to float rounding.

    :param net: as :func:`action_q_values`
    :param features: extractor features of ``observations``
    :param observations: the Dict observation tensors
    """
    hidden, weight, bias = item_layer(net, features)
    values = th.addmm(bias, hidden, weight.T)
    if isinstance(net, DuelingQNetwork):
        values.add_((net.value_net(features).squeeze(-1) - values.mean(dim=1)).unsqueeze(1))
    if getattr(net, "mask_excluded", False):
        rows, items = excluded_indices(observations, weight.shape[0])
        values[rows, items] = MASKED_VALUE
    return values


#: Scores per block of :func:`best_items` (1 MiB of float32, so that a block stays in cache).
BEST_ITEMS_BLOCK: int = 1 << 18


def best_items(hidden: th.Tensor, weight: th.Tensor, bias: th.Tensor,
               excluded: tuple[th.Tensor, th.Tensor] | None = None) -> tuple[th.Tensor, th.Tensor]:
    """Max and argmax over the items of ``hidden @ weight.T + bias``, block by block of items:
    no ``(M, n_items)`` matrix, ``O(M * block)`` memory (about twice as fast as the whole
    matrix at 87,585 items on this machine's CPU). No gradient.

    :param hidden: ``(M, h)``
    :param weight: ``(n_items, h)``
    :param bias: ``(n_items,)``
    :param excluded: ``(rows, items)`` pairs scored :data:`agents.masking.MASKED_VALUE`
        (:func:`agents.masking.excluded_indices`), or None
    :return: ``(values (M,), items (M,))``; ties go to the lower item index
    """
    n_items, m = weight.shape[0], hidden.shape[0]
    block = max(512, BEST_ITEMS_BLOCK // max(m, 1))
    best = th.full((m,), -th.inf, dtype=hidden.dtype, device=hidden.device)
    arg = th.zeros(m, dtype=th.long, device=hidden.device)
    with th.no_grad():
        if excluded is not None:  # sorted by item once: each block's pairs are one slice
            order = th.argsort(excluded[1])
            ex_rows, ex_items = excluded[0][order], excluded[1][order]
            starts = th.arange(0, n_items + block, block, device=ex_items.device)
            bounds = th.searchsorted(ex_items, starts).tolist()
        for j, lo in enumerate(range(0, n_items, block)):
            hi = min(lo + block, n_items)
            scores = th.addmm(bias[lo:hi], hidden, weight[lo:hi].T)
            if excluded is not None and bounds[j + 1] > bounds[j]:
                pairs = slice(bounds[j], bounds[j + 1])
                scores[ex_rows[pairs], ex_items[pairs] - lo] = MASKED_VALUE
            value, index = scores.max(dim=1)
            better = value > best  # strictly: an earlier block keeps its tie
            best = th.where(better, value, best)
            arg = th.where(better, index + lo, arg)
    return best, arg


class DuelingDQNPolicy(MaskedDQNPolicy):
    """SB3's DQN policy (Dict observations) with :class:`DuelingQNetwork` as online and target net.

    :param tied_item_embeddings: see :class:`DuelingQNetwork` (default False)
    :param kwargs: :class:`MaskedDQNPolicy` arguments (``mask_excluded``, SB3's DQN policy's)
    """

    def __init__(self, *args: Any, tied_item_embeddings: bool = False, **kwargs: Any) -> None:
        self._tied = bool(tied_item_embeddings)  # read by make_q_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> DuelingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingQNetwork(
            **net_args, tied_item_embeddings=self._tied, mask_excluded=self.mask_excluded
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "tied_item_embeddings": self._tied}



class MaskedQuantileNetwork(QuantileNetwork):
    """sb3-contrib's quantile network whose greedy action skips excluded items.

    With ``mask_excluded``, :meth:`_predict` takes the argmax of the mean quantile over the items
    the observation allows (see :class:`MaskedQNetwork`); ``forward`` returns raw quantiles.

    :param mask_excluded: mask excluded items when choosing (default False)
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_excluded = bool(mask_excluded)
        # Temperature of the next-item loss (as DuelingQNetwork's): logits = exp(.) * mean quantile.
        self.log_logit_scale = nn.Parameter(th.tensor(float(np.log(10.0))))

    def _predict(self, observation: Any, deterministic: bool = True) -> th.Tensor:
        q_values = acting_values(self, self(observation).mean(dim=1), observation)
        return q_values.argmax(dim=1).reshape(-1)

    def next_item_logits(self, features: th.Tensor, items: th.Tensor | None = None) -> th.Tensor:
        """Logits ``(M, n_items)`` of the next-item softmax: the mean quantile (the item's
        Q-value) times a learned temperature.

        :param items: int64 ``(K,)``: only these items' logits, ``(M, K)`` (default: every item)
        """
        # The mean over quantiles of the last linear layer is one linear layer with the mean
        # weights: (n_items, hidden) instead of an (M, n_quantiles * n_items) output.
        *body, last = self.quantile_net
        n_items = int(self.action_space.n)
        weight = last.weight.view(self.n_quantiles, n_items, -1)
        bias = last.bias.view(self.n_quantiles, n_items)
        if items is not None:
            weight, bias = weight[:, items], bias[:, items]
        weight, bias = weight.mean(dim=0), bias.mean(dim=0)
        hidden = nn.Sequential(*body)(features) if body else features
        return F.linear(hidden, weight, bias) * self.log_logit_scale.exp()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}


class MaskedQRDQNPolicy(QRDQNPolicy):
    """sb3-contrib's QR-DQN policy with :class:`MaskedQuantileNetwork` as online and target net.

    :param mask_excluded: see :class:`MaskedQuantileNetwork` (default False)
    :param kwargs: :class:`~sb3_contrib.qrdqn.policies.QRDQNPolicy` arguments
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        self.mask_excluded = bool(mask_excluded)  # read by make_quantile_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_quantile_net(self) -> MaskedQuantileNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return MaskedQuantileNetwork(**net_args, mask_excluded=self.mask_excluded).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}



class MaskedActorCriticPolicy(ActorCriticPolicy):
    """SB3's actor-critic policy (PPO, A2C) whose action distribution skips excluded items.

    With ``mask_excluded`` the logits of the items the observation excludes are set to
    :data:`agents.masking.MASKED_VALUE` before the softmax, in rollouts (``forward``), in the
    update (``evaluate_actions``) and in ``predict`` / scoring (``get_distribution``): the
    policy is ``pi(a | s)`` over the allowed items, a function of the observation alone, so the
    stored log-probabilities and the re-evaluated ones agree. (For MaskablePPO use the
    environment's ``action_masks()``, which are the same items.)

    :param mask_excluded: mask excluded items (default False: SB3's policy)
    :param kwargs: :class:`~stable_baselines3.common.policies.ActorCriticPolicy` arguments
    """

    def __init__(self, *args: Any, mask_excluded: bool = False, **kwargs: Any) -> None:
        self.mask_excluded = bool(mask_excluded)
        self._observations: dict[str, th.Tensor] | None = None
        super().__init__(*args, **kwargs)

    # SB3 builds the distribution from the latent code alone; the three entry points that build
    # one keep the observation at hand for _get_action_dist_from_latent while they run.
    def forward(self, obs: Any, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        self._observations = obs
        try:
            return super().forward(obs, deterministic)
        finally:
            self._observations = None

    def evaluate_actions(self, obs: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        self._observations = obs
        try:
            return super().evaluate_actions(obs, actions)
        finally:
            self._observations = None

    def get_distribution(self, obs: Any) -> Distribution:
        self._observations = obs
        try:
            return super().get_distribution(obs)
        finally:
            self._observations = None

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        distribution = super()._get_action_dist_from_latent(latent_pi)
        if self.mask_excluded and self._observations is not None:
            logits = mask_excluded(distribution.distribution.logits, self._observations)
            distribution = self.action_dist.proba_distribution(action_logits=logits)
        return distribution

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "mask_excluded": self.mask_excluded}
