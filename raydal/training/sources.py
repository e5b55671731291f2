"""Batch sources: what the training loop iterates once per epoch.

A batch is a decoded mapping ``{"image": uint8 [N, H, W, B], "labels": uint8
[N, C]}`` (optionally ``"id": str [N]``), as ``raydal.data.shards.decode_batch``
returns. An ``EpochSource`` is a callable ``epoch -> iterable of batches``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Union

import numpy as np

from raydal.exceptions import ConfigError

Batch = Mapping[str, np.ndarray]
EpochSource = Callable[[int], Iterable[Batch]]
#: What the launchers accept: a decoded split in memory, a callable epoch -> batches,
#: or a re-iterable of batches (a list; not a one-shot generator).
BatchData = Union[Mapping[str, np.ndarray], EpochSource, Iterable[Batch]]


def array_batches(data: Mapping[str, np.ndarray], batch_size: int, seed: int | None) -> EpochSource:
    """Mini-batches of an in-memory decoded split; shuffled per epoch when ``seed`` is given.

    Epoch ``e`` uses the permutation of ``numpy.random.default_rng([seed, e])``.
    """
    for key in ("image", "labels"):
        if key not in data:
            raise ConfigError(
                f"In-memory training data needs an {key!r} array (decoded split). Got keys {sorted(data)}."
            )
    n = len(data["image"])
    if len(data["labels"]) != n:
        raise ConfigError(f"'image' has {n} rows but 'labels' has {len(data['labels'])}: they must match.")

    def batches(epoch: int) -> Iterator[dict[str, Any]]:
        order = np.random.default_rng([seed, epoch]).permutation(n) if seed is not None else np.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield {k: np.asarray(v)[idx] for k, v in data.items()}

    return batches


def as_epoch_source(data: BatchData, batch_size: int, seed: int | None) -> EpochSource:
    """Normalise launcher input to an ``EpochSource``.

    A mapping with ``image``/``labels`` arrays is batched by ``batch_size``
    (shuffled per epoch with ``seed``; ``None`` keeps the order). A callable is
    used as is. A re-iterable (e.g. a list of batches) is iterated anew each epoch.
    """
    if isinstance(data, Mapping):
        return array_batches(data, batch_size, seed)
    if callable(data):
        return data
    if isinstance(data, Iterable):
        if iter(data) is data:
            raise ConfigError(
                "Training data is a one-shot iterator, which the loop cannot read once per epoch. "
                "Pass a list of batches, a callable epoch -> batches, or a dict of decoded arrays."
            )
        return lambda epoch: data
    raise ConfigError(
        f"Training data must be a dict of decoded arrays, a callable epoch -> batches or a list of batches. "
        f"Got {type(data).__name__}."
    )
