"""The in-process reference every distributed scoring path must give bit for bit."""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def one_thread():
    """Bit-identity holds at equal intra-op thread counts: actors that run 1 (``torch_threads=1``) need
    a reference on 1 (a CPU convolution's float sums depend on how the threads split it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def in_process(manifest, model, strategy, k, exclude, batch_size=16, prev=None, amp="auto", threads1=False):
    """``score_pool`` over the in-process batches of the pool (``threads1``: on one thread)."""
    from raydal.data.shards import iter_batches
    from raydal.query import score_pool

    with one_thread() if threads1 else contextlib.nullcontext():
        batches = iter_batches(manifest, "pool", batch_size, exclude=exclude)
        return score_pool(model, batches, strategy, k, prev_probs=prev, amp=amp)


def assert_identical(got, want):
    """Bit for bit: ids and their order, probabilities, uncertainties, candidates, their embeddings, ||h||."""
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.probs, want.probs)
    assert got.uncertainty_name == want.uncertainty_name
    np.testing.assert_array_equal(got.uncertainty, want.uncertainty)
    np.testing.assert_array_equal(got.cand_ids, want.cand_ids)
    np.testing.assert_array_equal(got.cand_uncertainty, want.cand_uncertainty)
    np.testing.assert_array_equal(got.cand_embeddings, want.cand_embeddings)
    assert got.feature_norm is not None  # ||h|| of every row, for the query diagnostics
    np.testing.assert_array_equal(got.feature_norm, want.feature_norm)
