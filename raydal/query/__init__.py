"""Query functions: uncertainty strategies behind a registry, k-means++ diversity, pool scoring.

No Ray here: everything runs in one process (on CPU or a GPU box without Ray or
FAISS). The Ray executor runs the same scoring in its Ray Train workers after
training (the default), on Ray Data actors with ``score_workers`` N
(``raydal.distributed.score_data``), or on warm Ray actors when the training run did
not score (``raydal.distributed.score``).
"""

from raydal.query.base import QueryStrategy, get_strategy, list_strategies, random_ids, register_strategy
from raydal.query.clustering import KMeansResult, kmeans
from raydal.query.diversity import select_diverse
from raydal.query.ll import LearnedLoss
from raydal.query.mge import MGE, mge_uncertainty
from raydal.query.random import RandomStrategy
from raydal.query.scoring import (
    BlockScorer,
    PoolScores,
    PrevProbs,
    TopKCandidates,
    score_batch,
    score_pool,
)
from raydal.query.tpd import TPD, tpd_uncertainty

__all__ = [
    "MGE",
    "TPD",
    "BlockScorer",
    "KMeansResult",
    "LearnedLoss",
    "PoolScores",
    "PrevProbs",
    "QueryStrategy",
    "RandomStrategy",
    "TopKCandidates",
    "get_strategy",
    "kmeans",
    "list_strategies",
    "mge_uncertainty",
    "random_ids",
    "register_strategy",
    "score_batch",
    "score_pool",
    "select_diverse",
    "tpd_uncertainty",
]
