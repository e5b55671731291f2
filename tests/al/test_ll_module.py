"""The LL loss-prediction module is built and trained only for strategies that rank by it."""

import pytest

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.exceptions import ConfigError
from raydal.models import load_checkpoint, read_checkpoint_meta
from raydal.query import get_strategy, list_strategies


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_only_ll_strategies_need_the_loss_head():
    needing = sorted(name for name in list_strategies() if get_strategy(name).needs_loss_head)
    assert needing == ["ll", "ll+clustering"]


def test_model_spec_has_the_ll_module_only_for_ll_unless_forced(make_config):
    specs = {name: LocalExecutor(make_config(strategy=name)).model_spec() for name in list_strategies()}
    assert {name for name, spec in specs.items() if spec.ll} == {"ll", "ll+clustering"}
    counts = {name: n_params(spec.build(seed=0)) for name, spec in specs.items()}
    # The LL module is the only difference: MGE, TPD and random models are equal and smaller.
    assert counts["ll+clustering"] > counts["mge+clustering"] == counts["tpd"] == counts["random"]
    forced = LocalExecutor(make_config(strategy="mge+clustering", ll_module="on")).model_spec()
    assert forced.ll and n_params(forced.build(seed=0)) == counts["ll+clustering"]


def test_ll_module_setting_is_validated_and_changes_the_fingerprint(make_config):
    with pytest.raises(ConfigError, match="'ll_module' parameter of ALConfig must be one of"):
        make_config(ll_module="off")
    auto, on = make_config(), make_config(ll_module="on")
    assert auto.to_dict()["ll_module"] == "auto" and on.to_dict()["ll_module"] == "on"
    assert auto.fingerprint() != on.fingerprint()  # it changes results: a different experiment


@pytest.mark.slow
def test_densenet121_specs_match_paper_table_1(make_config):
    # Table I: 7.33 M parameters for LL, 6.97 M for TPD/MGE (17 classes, RGB: UCMerced multi-label).
    def millions(strategy):
        spec = LocalExecutor(make_config(strategy=strategy, backbone="densenet121")).model_spec()
        return round(n_params(spec.build(seed=0)) / 1e6, 2), spec.num_classes

    assert millions("ll+clustering") == (7.33, 17)
    assert millions("mge+clustering") == millions("tpd+clustering") == (6.97, 17)


@pytest.mark.parametrize(
    "strategy,ll_module,has_head",
    [
        ("mge+clustering", "auto", False),
        ("ll+clustering", "auto", True),
        ("mge+clustering", "on", True),
    ],
)
def test_a_run_trains_the_ll_head_only_where_needed(make_config, strategy, ll_module, has_head):
    cfg = make_config(strategy=strategy, ll_module=ll_module, iterations=1)
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    checkpoint = state.history[0]["checkpoint"]
    model = load_checkpoint(checkpoint)
    assert (model.ll is not None) == has_head
    assert read_checkpoint_meta(checkpoint)["model"]["ll"] == has_head
    # The first training's LL ranking loss is logged only when the head was trained.
    history = read_checkpoint_meta(checkpoint)["extra"]["metrics"]
    ll_loss = history["train_ll_loss"]  # NaN without the head, which strict JSON writes as null
    assert (ll_loss is not None and ll_loss == ll_loss) == has_head
    assert len(state.history[0]["selected"]) == cfg.b
