"""Pool scoring on warm Ray actors: the in-process ``BlockScorer`` on every node, merged on the driver.

The driver cuts the unlabeled pool into pieces of whole forward batches
(``raydal.query.pool.plan_pieces``, the same batches the in-process loop
forms), keeps two pieces queued per scoring actor, and streams the results into
the same ``TopKCandidates`` as ``raydal.query.score_pool``. The probabilities,
uncertainties, candidates and selection are therefore identical to the
in-process ones, on any number of actors and nodes.

Start-up: the actors are kept warm between calls (the AL loop scores once per
iteration from the same driver), so only the first call pays for new processes
and imports; each actor reloads the model only when the checkpoint changes. A
warm CPU actor holds no logical CPU (training and reads keep the cluster's
CPUs) and its torch threads share its node's cores; actors with GPUs are
released after the call so that training gets the GPUs back.

Each piece result carries ids, probabilities [n, C] and uncertainties; only rows
that enter their actor's running top-K also carry an embedding. A row in the
global top-K is always in the top-K of the rows its actor has seen, so the
driver gets every candidate it needs and never holds N x D embeddings.

Placement and faults: CPU actors are pinned round-robin to the alive nodes
(``raydal.query.pool.spread_over_nodes``). A crashed actor restarts
(``max_restarts``) and its piece is retried (``max_task_retries``); an actor
that cannot come back (its node is gone) is dropped and its pieces go to the
others; if none is left, a fresh set is placed over the nodes then alive (once
per call), as it is by the next call.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from raydal.config import ALConfig
from raydal.exceptions import QueryError
from raydal.query.base import QueryStrategy, get_strategy
from raydal.query.candidates import PoolScores, TopKCandidates
from raydal.query.pool import PoolPiece, ScoringProgress, batches_per_piece, plan_pieces, spread_over_nodes
from raydal.query.scoring import BlockScorer
from raydal.settings import Interval, check_value

__all__ = ["ScoringWorker", "release_scoring_actors", "score_pool_ray"]

#: Pieces queued per actor: one running, one waiting, so an actor never idles between pieces.
PIECES_IN_FLIGHT = 2
#: Restarts of a scoring actor (node loss, OOM) before it is dropped.
ACTOR_MAX_RESTARTS = 3


class ScoringWorker:
    """A scoring actor's logic: scores pool pieces for one job after another, keeping its model loaded.

    device: "cpu", "cuda", ...; default CUDA when the process sees a GPU.
    torch_threads: intra-op threads for the forward pass.
    """

    def __init__(self, device: str | None = None, torch_threads: int = 1):
        import ray
        import torch

        from raydal.utils import default_device

        torch.set_num_threads(max(1, int(torch_threads)))
        self.device = torch.device(device) if device else default_device()
        self._model_key: tuple | None = None
        self._model = None
        self._job_key: str | None = None
        self._scorer: BlockScorer | None = None
        self._manifest = None
        #: The Ray node this worker runs on (reported with each piece), None outside Ray.
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None

    def score(self, job: Mapping[str, Any], piece: PoolPiece) -> dict[str, Any]:
        """Score one piece for ``job`` (see ``score_pool_ray``).

        Returns ``id`` [n] str, ``probs`` float32 [n, C], ``uncertainty`` float64 [n],
        ``feature_norm`` float32 [n], ``candidate`` bool [n], ``embeddings`` float32
        [n_candidates, D] and ``node``.
        """
        from raydal.data.shards import decode_batch
        from raydal.faults import fault_point
        from raydal.query.pool import read_piece

        fault_point("score:batch")  # once per piece (tests remove a node here)
        scorer = self._scorer_for(job)
        outs = [
            scorer(decoded["id"], decoded["image"])
            for decoded in (decode_batch(t, self._manifest) for t in read_piece(piece, job["batch_size"]))
        ]
        return {
            "id": np.concatenate([o["id"] for o in outs]),
            "probs": np.concatenate([o["probs"] for o in outs]),
            "uncertainty": np.concatenate([o["uncertainty"] for o in outs]),
            "feature_norm": np.concatenate([o["feature_norm"] for o in outs]),
            "candidate": np.concatenate([o["candidate"] for o in outs]),
            "embeddings": np.concatenate([o["embeddings"] for o in outs]),
            "node": self.node_id,
        }

    def _scorer_for(self, job: Mapping[str, Any]) -> BlockScorer:
        if self._job_key == job["key"] and self._scorer is not None:
            return self._scorer
        from raydal.data.shards import load_manifest
        from raydal.models import load_checkpoint

        self._scorer = None  # the last job's scorer (and its prev_probs index) goes first
        key = _checkpoint_key(job["checkpoint_dir"])
        if key != self._model_key:
            self._model, self._model_key = None, None  # free the old model before loading the new one
            self._model = load_checkpoint(job["checkpoint_dir"], self.device)
            self._model_key = key
        prev = job.get("prev_probs")
        if prev is not None and not isinstance(prev, tuple):  # an ObjectRef shared by every actor
            import ray

            prev = ray.get(prev)
        self._manifest = load_manifest(job["manifest_dir"])
        self._scorer = BlockScorer(self._model, job["strategy"], job["k"], prev, self.device, job["amp"])
        self._job_key = job["key"]
        return self._scorer


def _checkpoint_key(checkpoint_dir: str) -> tuple:
    """(path, mtime of the model file): a checkpoint rewritten in place is reloaded."""
    from raydal.models.checkpoint import MODEL_FILE

    try:
        return (str(checkpoint_dir), os.stat(os.path.join(checkpoint_dir, MODEL_FILE)).st_mtime_ns)
    except OSError:  # a storage URI: folders there are written once
        return (str(checkpoint_dir), None)


class _WarmActors:
    """The scoring actors this process keeps between calls, for one Ray cluster and one resource shape."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.actors: list[Any] = []

    def get(self, n: int, num_cpus: float, num_gpus: float, torch_threads: int | None) -> list[Any]:
        import ray

        cluster = ray.get_runtime_context().get_job_id()
        key = (cluster, ray.get_runtime_context().get_node_id(), num_cpus, num_gpus, torch_threads)
        if self.key is not None and key[:2] != self.key[:2]:  # another Ray session: those actors are gone
            self.actors, self.key = [], None
        if key != self.key or len(self.actors) < n:
            self.release()
            self.actors = _start_actors(n, num_cpus, num_gpus, torch_threads)
            self.key = key
        return self.actors[:n]

    def drop(self, actor: Any) -> None:
        self.actors = [a for a in self.actors if a is not actor]

    def release(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone, or Ray shut down
                pass
        self.actors, self.key = [], None


_WARM = _WarmActors()


def release_scoring_actors() -> None:
    """Stop the warm scoring actors of this process (they hold memory and, with GPUs, the GPUs)."""
    with _WARM.lock:
        _WARM.release()


def _start_actors(n: int, num_cpus: float, num_gpus: float, torch_threads: int | None) -> list[Any]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cls = ray.remote(ScoringWorker)
    options = dict(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=ACTOR_MAX_RESTARTS
    )
    if num_gpus > 0:  # Ray places them by GPU; one forward-pass thread feeds each GPU
        return [cls.options(**options).remote("cuda", torch_threads or 1) for _ in range(n)]
    nodes = {node["NodeID"]: node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]}
    # soft: spread over the nodes, but an actor whose node is lost restarts on another one
    # (tests/reliability/test_node_loss.py); hard affinity made the query fail there.
    return [
        cls.options(**options, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)).remote(
            "cpu", torch_threads or threads
        )
        for node_id, threads in spread_over_nodes(nodes, n)
    ]


def _positive_int(name: str, value: object) -> int:
    return check_value(value, name, "score_pool_ray", Interval(int, 1))


def score_pool_ray(
    checkpoint_dir: str | os.PathLike,
    manifest_dir: str | os.PathLike,
    exclude_ids: Collection[str] | None,
    strategy: "str | QueryStrategy",
    k: int,
    prev_probs: "Mapping[str, Any] | tuple[Any, Any] | None" = None,
    *,
    concurrency: int = 1,
    batch_size: int = ALConfig.score_batch_size,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    torch_threads: int | None = None,
    amp: str = "auto",
    progress: Callable[[str], None] | None = None,
    keep_warm: bool | None = None,
) -> PoolScores:
    """Score the unlabeled pool on Ray actors; returns what ``raydal.query.score_pool`` returns.

    checkpoint_dir: model folder (``save_checkpoint``), visible to every node.
    manifest_dir: prepared shards, visible to every node; the ``pool`` split is scored.
    exclude_ids: the labeled ids to skip.
    strategy, k, prev_probs: as in ``score_pool`` (k = ``strategy.candidate_count(b, m)``).
    concurrency: number of scoring actors (spread round-robin over the nodes).
    batch_size: rows per forward pass (the same batches as ``score_pool`` over
        ``iter_batches(manifest, "pool", batch_size, exclude=exclude_ids)``).
    num_gpus: GPUs per actor (e.g. 1 on a GPU node; the actor then runs on CUDA).
    num_cpus: logical CPUs each actor holds; default 0 for CPU actors (they are kept
        warm and must not starve training), 1 with a GPU.
    torch_threads: forward-pass threads per actor; default the node's CPUs shared by
        the actors placed on it (1 with a GPU).
    amp: precision mode, the training's ``TrainConfig.amp`` ("auto": bf16 on CUDA, "bf16", "off").
    progress: gets about ten lines "scored n/N rows, rate, time left" (e.g. the loop's log).
    keep_warm: keep the actors for the next call; default True without GPUs.
    Starts an embedded Ray when none is running (``raydal.distributed.session.ensure_ray``).
    """
    import ray

    from raydal.data.shards import load_manifest
    from raydal.distributed.session import ensure_ray
    from raydal.training.config import check_amp

    concurrency = _positive_int("concurrency", concurrency)
    batch_size = _positive_int("batch_size", batch_size)
    check_value(num_gpus, "num_gpus", "score_pool_ray", Interval(float, 0))
    check_value(num_cpus, "num_cpus", "score_pool_ray", Interval(float, 0), nullable=True)
    check_amp(amp, "score_pool_ray")
    strategy = get_strategy(strategy)
    manifest = load_manifest(manifest_dir)
    if not ray.is_initialized():
        ensure_ray()
    if num_cpus is None:
        num_cpus = 1.0 if num_gpus > 0 else 0.0
    if keep_warm is None:
        keep_warm = num_gpus == 0

    files = manifest.split_files("pool")
    per_file = max(1, manifest.splits["pool"]["count"] // max(1, len(files)))
    batches = batches_per_piece(manifest.splits["pool"]["count"], batch_size, concurrency, per_file)
    pieces, total = plan_pieces(files, batch_size, exclude_ids, batches)

    uncertainty_name = strategy.ranks_by(prev_probs is not None)
    job = dict(
        key=uuid.uuid4().hex,
        checkpoint_dir=str(checkpoint_dir),
        manifest_dir=str(manifest.root),
        strategy=strategy,
        k=k if uncertainty_name is not None else 0,
        prev_probs=None,
        batch_size=batch_size,
        amp=amp,
    )
    if prev_probs is not None:
        job["prev_probs"] = ray.put(_prev_arrays(prev_probs))  # one copy in the object store, shared by the actors

    top = TopKCandidates(job["k"])
    # Results land in place (pieces finish in any order): no per-piece lists to concatenate later.
    start = np.cumsum([0] + [p.count for p in pieces])
    ids: list[np.ndarray | None] = [None] * len(pieces)
    probs: np.ndarray | None = None
    uncs = np.zeros(total, dtype=np.float64)
    norms = np.zeros(total, dtype=np.float32)
    nodes: set[str | None] = set()
    t0 = time.perf_counter()
    with _WARM.lock:
        try:
            actors = _WARM.get(min(concurrency, max(1, len(pieces))), num_cpus, num_gpus, torch_threads)
            report = ScoringProgress(total, progress)  # from here: what the rate should count
            respawn = lambda n: _WARM.get(n, num_cpus, num_gpus, torch_threads)  # noqa: E731  (nodes now alive)
            for piece, out in _run_pieces(actors, job, pieces, respawn):
                nodes.add(out["node"])
                rows = slice(start[piece.index], start[piece.index + 1])
                ids[piece.index] = out["id"].copy()  # a view would pin the whole result in the object store
                if probs is None:
                    probs = np.empty((total, out["probs"].shape[1]), dtype=np.float32)
                probs[rows] = out["probs"]
                uncs[rows] = out["uncertainty"]
                norms[rows] = out["feature_norm"]
                cand = out["candidate"]
                top.add(out["id"][cand], out["uncertainty"][cand], out["embeddings"])
                report.update(len(out["id"]))
        finally:
            if not keep_warm:
                _WARM.release()
    if progress is not None:
        progress(
            f"  scored {total:,} rows in {time.perf_counter() - t0:.1f}s with {len(actors)} actor(s) "
            f"on {len(nodes)} node(s), {len(pieces)} pieces"
        )
    ids_all = [np.concatenate(ids)] if pieces else []
    probs_all = [probs] if probs is not None else []
    return PoolScores.assemble(
        ids_all, probs_all, [uncs] if uncertainty_name else None, uncertainty_name, top, feature_norm=[norms]
    )


def _prev_arrays(prev_probs: "Mapping[str, Any] | tuple[Any, Any]") -> tuple[np.ndarray, np.ndarray]:
    """(ids [N], probs float32 [N, C]) without the id index ``PrevProbs`` builds (the actors build theirs)."""
    from raydal.query.candidates import unpack_ids
    from raydal.query.ranking import as_numpy
    from raydal.query.scoring import PrevProbs

    if isinstance(prev_probs, tuple) and len(prev_probs) == 2:
        ids, probs = unpack_ids(prev_probs[0]), np.asarray(as_numpy(prev_probs[1]), dtype=np.float32)
        if probs.ndim == 2 and len(probs) == len(ids):
            return ids, probs
    prev = PrevProbs(prev_probs)  # other forms, and the errors
    return prev.ids, prev.probs


def _run_pieces(
    actors: list[Any], job: dict[str, Any], pieces: list[PoolPiece], respawn: Callable[[int], list[Any]] | None = None
):
    """Yield (piece, result) as they come, keeping ``PIECES_IN_FLIGHT`` pieces queued per actor.

    respawn(n): new actors, asked for once if every actor has died with pieces left.
    """
    import ray
    from ray.exceptions import RayActorError

    queue = collections.deque(pieces)
    live = list(actors)
    running: dict[Any, tuple[Any, PoolPiece]] = {}
    load = {id(a): 0 for a in live}
    while queue or running:
        if not live and queue and respawn is not None:
            live, respawn = list(respawn(len(actors))), None
            load.update({id(a): 0 for a in live})
        for actor in live:
            while queue and load[id(actor)] < PIECES_IN_FLIGHT:
                piece = queue.popleft()
                running[actor.score.remote(job, piece)] = (actor, piece)
                load[id(actor)] += 1
        if not running:
            raise QueryError(
                f"Every scoring actor died with {len(queue)} pieces of the pool left to score. "
                "Fix: check the Ray cluster's nodes (ray status) and the actors' logs."
            )
        (ref,), _ = ray.wait(list(running), num_returns=1)
        actor, piece = running.pop(ref)
        load[id(actor)] -= 1
        try:
            out = ray.get(ref)
        except RayActorError:  # restarts exhausted: give its pieces to the others
            queue.appendleft(piece)
            if actor in live:
                live.remove(actor)
                _WARM.drop(actor)
            continue
        yield piece, out
