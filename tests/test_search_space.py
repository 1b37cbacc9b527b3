"""The search spaces: plain data, every key a real parameter, every corner a valid model."""

from __future__ import annotations

import pytest

from agents.baselines import get_recommender_class, init_param_names
from agents.search_space import (
    LSRWRL,
    LSRWRL_SEARCH_SPACE,
    check_space,
    model_parameters,
    optuna_distributions,
    search_space,
    tune_domains,
)

SEQUENCE_MODELS = ("sasrec", "gru4rec", "stamp")
MODELS = ("itemcf", "usercf", "ease", *SEQUENCE_MODELS, LSRWRL)


def corners(spec: tuple) -> list:
    """Both ends of a range, or every value of a choice."""
    kind, *args = spec
    return list(args[0]) if kind == "choice" else [args[0], args[1]]


@pytest.mark.parametrize("model", MODELS)
def test_every_key_is_a_real_parameter_of_its_model(model: str) -> None:
    space = search_space(model)
    assert space and set(space) <= set(model_parameters(model))
    if model != LSRWRL:
        assert set(space) <= set(init_param_names(get_recommender_class(model)))


def test_the_brief_s_options_are_searched_for_every_model() -> None:
    regime = {"lr", "dim", "dropout", "max_len", "weight_decay", "window_stride", "lr_schedule",
              "embedding_init_std", "train_steps"}  # fmt: skip
    for model in SEQUENCE_MODELS:
        assert regime <= set(search_space(model))
    assert "n_blocks" in search_space("sasrec") and "n_layers" in search_space("gru4rec")
    assert set(search_space("ease")) == {"l2"}
    assert set(search_space("itemcf")) == set(search_space("usercf")) == {"k", "shrinkage"}
    assert {"learning_rate", "next_item_weight", "embed_dim", "history_len", "pretrain_steps"} <= set(LSRWRL_SEARCH_SPACE)
    with pytest.raises(KeyError, match="no search space for 'popularity'"):
        search_space("popularity")


def test_a_typo_or_a_malformed_distribution_fails_with_the_fix() -> None:
    names = init_param_names(get_recommender_class("sasrec"))
    with pytest.raises(ValueError, match=r"'n_block' is not a parameter of sasrec \(did you mean n_blocks"):
        check_space({"n_block": ("choice", [1, 2])}, names, "sasrec")
    bad = {"lr": ("loguniform", 0.0, 1e-2), "dim": ("int", 8.5, 64), "dropout": ("normal", 0, 1),
           "max_len": ("choice", []), "n_blocks": ("uniform", 3, 1)}  # fmt: skip
    with pytest.raises(ValueError) as err:
        check_space(bad, names, "sasrec")
    message = str(err.value)
    for text in ("a loguniform range needs low > 0", "an int range needs integer ends", "kind one of",
                 "needs a non-empty list", "low=3 must be below high=1"):  # fmt: skip
        assert text in message


@pytest.mark.parametrize("model", ("itemcf", "usercf", "ease", *SEQUENCE_MODELS))
def test_every_corner_of_a_baseline_space_fits(model: str) -> None:
    """Each value at the edge of each range (one key at a time) builds and fits a model."""
    pytest.importorskip("torch")
    from test_baselines import cycle_split

    split = cycle_split(n_users=6, length=12)
    cls = get_recommender_class(model)
    small = {"train_steps": 2, "dim": 8, "num_threads": 1} if model in SEQUENCE_MODELS else {}
    for key, spec in search_space(model).items():
        for value in corners(spec):
            params = {**small, key: value}
            if key == "train_steps":
                cls(**params)  # built, not trained for thousands of steps
                continue
            if key == "window_stride" and value is not None:
                params["max_len"] = max(value, 10)
            model_ = cls(**params).fit(split)
            assert model_.score([0, 1]).shape == (2, split.n_items)


def test_every_corner_of_lsrwrl_s_space_is_a_valid_config() -> None:
    from agents.config import make_config

    for key, spec in LSRWRL_SEARCH_SPACE.items():
        for value in corners(spec):
            for dataset in ("ml-100k", "ml-1m"):
                assert getattr(make_config("default", dataset=dataset, **{key: value}), key) == value


@pytest.mark.parametrize("model", MODELS)
def test_spaces_become_ray_tune_and_optuna_distributions_with_the_same_bounds(model: str) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("optuna")
    space = search_space(model)
    domains, distributions = tune_domains(space), optuna_distributions(space)
    assert set(domains) == set(distributions) == set(space)
    for key, (kind, *args) in space.items():
        domain, dist = domains[key], distributions[key]
        if kind == "choice":
            assert list(domain.categories) == list(dist.choices) == list(args[0])
            continue
        assert (dist.low, dist.high, dist.log) == (args[0], args[1], kind.startswith("log"))
        # Tune's integer domains exclude their upper end: the space's high must still be drawable
        upper = args[1] + 1 if kind in ("int", "logint") else args[1]
        assert (domain.lower, domain.upper) == (args[0], upper)
        samples = domain.sample(size=200)
        assert all(args[0] <= v <= args[1] for v in samples)
