import pytest

from raydal.config import ALConfig


@pytest.fixture
def make_config(tiny_shards, tmp_path):
    """An ALConfig on the tiny shards with a tiny model: seconds per iteration."""

    def make(**overrides) -> ALConfig:
        fields = dict(
            dataset="ucmerced",
            shards_dir=str(tiny_shards),
            state_dir=str(tmp_path / "state"),
            strategy="mge+clustering",
            b=5,
            m=2,
            initial_labeled=10,
            iterations=2,
            seed=0,
            backbone="smallcnn",
            warm_start=True,
            executor="local",
            score_batch_size=32,
            train={"epochs": 1, "batch_size": 8, "lr": 0.05},
        )
        fields.update(overrides)
        return ALConfig(**fields)

    return make
