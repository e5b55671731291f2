"""One AL iteration at BigEarthNet size, end to end on a simulated multi-node cluster: seconds per
phase, bytes read, the driver's peak memory.

This process is the AL driver: the real ``ActiveLearner`` with the real
``RayExecutor``, configured as ``raydal run bigearthnet`` configures it (the
dataset's protocol from ``resolve_config``: 1,000 initial labels, b = 1,000,
m = 4, MGE + clustering, batch 100, 100 epochs, cold start; every other setting
at its default unless a flag says otherwise), runs the ``init``, ``train`` and
``query`` steps of iteration 0 as the driver actor would (``raydal run`` runs
the same loop inside a Ray actor; here it runs in the benchmark's process so
that its phases can be timed and its memory sampled). Everything is real
except the model's compute:

- shards: ``--pool`` pool rows (550,000), ``--val`` and ``--test`` rows
  (120,000 each, BigEarthNet's ~240k together), 12 bands, 19 classes, ids shaped
  like BigEarthNet v2 patch names (51 characters), random pixels (Parquet cannot
  compress them) of ``--image-size`` (8 x 8 x 12 by default, to fit the disk),
  random multi-hot labels (~2.9 per image), written with raydal's shard schema in
  ``prepare``'s layout: 512 images per file and row groups by
  ``raydal.data.shards.ROW_GROUP_BYTES`` for ``--layout-size`` images (120: one
  image per group, as prepare writes real BigEarthNet; 0: the rule applied to
  the small images themselves);
- the model: the STAND-IN ``standin_sleep`` backbone (``benchmarks/standin.py``)
  under raydal's real head and LL module: each forward pass sleeps
  ``--ns-per-value`` ns per pixel-band value (latency grows with pixels; the
  sleep releases the GIL, like a process waiting on a GPU);
- the cluster: ``ray.cluster_utils.Cluster`` of ``--nodes`` x ``--cpus`` logical
  CPUs on 127.0.0.1; every Ray worker registers the stand-in and counts its
  shard reads (``worker_setup``, Ray's ``worker_process_setup_hook``).

Phases: read (each Ray Train rank reads its labeled share, in the background
while the worker group forms), train (``fit``), evaluate (val and test in the
workers), score (the unlabeled pool: in the training workers with
``score_workers`` 0, else on Ray Data actors), merge (rank 0 merges the workers'
top-K candidates; on the Ray Data path the driver's ``PoolScores.assemble``),
select (k-means++ on the m*b candidates, in the driver), save (state.json,
the pool probabilities, the scores file beside the checkpoint, in the driver).
Bytes read are counted where Parquet reads the shard files (a file wrapper
under ``pyarrow.parquet.ParquetFile`` in every process, a counting pyarrow
filesystem under Ray Data's reads), split into footers and row-group data.
The driver's resident memory is sampled every 50 ms.

    python benchmarks/bench_bigearthnet.py                       # 550,000 + 2 x 120,000 rows of 8x8x12
    python benchmarks/bench_bigearthnet.py --iterations 2        # and the steady state (the driver's caches warm)
    python benchmarks/bench_bigearthnet.py --score-workers 2     # scoring on 2 Ray Data actors
    python benchmarks/bench_bigearthnet.py --small               # 20,000 rows: the smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

#: Where every process appends its read and phase records (one JSON line each), set by the driver.
LOG_ENV = "RAYDAL_BENCH_IO_DIR"
#: "0": time the phases without counting bytes (the counting wraps every read in Python).
COUNT_ENV = "RAYDAL_BENCH_COUNT_BYTES"
#: 10^9 bytes: the issue's "<= 1 GB" driver memory target.
GB = 10**9
BANDS = 12
#: BigEarthNet's image side: prepare writes one image per row group at this size.
REAL_SIZE = 120


# ---------------------------------------------------------------------- the shards


def patch_names(n: int) -> list[str]:
    """``n`` distinct ids shaped like BigEarthNet v2 patch names, 51 characters, in sorted order:
    ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57`` (product, tile, patch row and column)."""
    names = []
    for p in range(-(-n // 10_000)):  # 100 x 100 patches per product
        day = 1 + p % 28
        product = (
            f"S2{'AB'[p % 2]}_MSIL2A_2017{6 + p // 28 % 6:02d}{day:02d}T10{p % 60:02d}31_N9999_"
            f"R{22 + p % 100:03d}_T{29 + p % 7}U{'PQRS'[p % 4]}{'PQRS'[p // 4 % 4]}"
        )
        names += [f"{product}_{r:02d}_{c:02d}" for r in range(100) for c in range(100)]
    return sorted(names[:n])


def write_shards(
    out: Path, pool: int, val: int, test: int, size: int, layout_size: int, seed: int = 0, shard_size: int = 512
) -> dict[str, Any]:
    """Write a prepared BigEarthNet-shaped shard set (raydal's schema, manifest, prepare's layout) to ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import simulated

    from raydal.constants import MANIFEST_NAME
    from raydal.data.bigearthnet import BigEarthNetReader
    from raydal.data.shards import ROW_GROUP_BYTES, SCHEMA, Manifest, write_id_index
    from raydal.utils import atomic_write_json

    rng = np.random.default_rng(seed)
    classes = list(BigEarthNetReader.classes)
    image_bytes = size * size * BANDS
    group_rows = max(1, ROW_GROUP_BYTES // ((layout_size or size) ** 2 * BANDS))
    names = np.array(patch_names(pool + val + test))
    split_of = rng.permutation(np.repeat(np.array(["pool", "val", "test"]), [pool, val, test]))
    prior = rng.uniform(0.02, 0.35, len(classes))  # ~2.9 labels per image, as BigEarthNet-19
    splits, label_counts = {}, {}
    for split in ("pool", "val", "test"):
        ids = names[split_of == split]
        (out / split).mkdir(parents=True, exist_ok=True)
        files, rows, counts = [], [], np.zeros(len(classes), np.int64)
        for f, start in enumerate(range(0, len(ids), shard_size)):
            chunk = ids[start : start + shard_size]
            labels = (rng.random((len(chunk), len(classes))) < prior).astype(np.uint8)
            labels[np.arange(len(chunk)), rng.integers(0, len(classes), len(chunk))] = 1
            counts += labels.sum(0, dtype=np.int64)
            table = pa.table(
                {
                    "id": pa.array(chunk.tolist(), pa.string()),
                    "image": simulated._fixed_binary(rng.integers(0, 256, (len(chunk), image_bytes), dtype=np.uint8)),
                    "labels": simulated._fixed_binary(labels),
                    "path": pa.array([""] * len(chunk), pa.string()),
                    "labeled": pa.array(np.ones(len(chunk), bool)),
                },
                schema=SCHEMA,
            )
            name = f"{split}/part-{f:05d}.parquet"
            pq.write_table(table, out / name, row_group_size=group_rows, write_statistics=["id"])  # as prepare writes
            files.append(name)
            rows.append(len(chunk))
        splits[split] = {
            "count": int(len(ids)),
            "files": files,
            "rows": rows,
            "ids": write_id_index(out, split, ids.tolist(), np.ones(len(ids), bool)),
        }  # as prepare
        label_counts[split] = {c: int(k) for c, k in zip(classes, counts)}
    manifest = Manifest(
        root=out,
        dataset="bigearthnet",
        classes=classes,
        band_names=list(BigEarthNetReader.band_names),
        bands=BANDS,
        image_size=size,
        splits=splits,
        label_counts=label_counts,
        source_root="(benchmark: random pixels, BigEarthNet-shaped ids and labels)",
        seed=seed,
        split_rule="seeded random",
        unlabeled={s: 0 for s in splits},
    )
    atomic_write_json(out / MANIFEST_NAME, manifest.to_json())
    # The same shards as a set written before prepare's id index (--no-id-index: the driver reads footers).
    without = {k: {"count": v["count"], "files": v["files"]} for k, v in manifest.splits.items()}
    atomic_write_json(out / NO_INDEX_MANIFEST, dict(manifest.to_json(), splits=without))
    return {"rows_per_group": group_rows, "rows_per_file": shard_size}


#: write_shards' second manifest: the same shards without the id index (``--no-id-index`` runs on it).
NO_INDEX_MANIFEST = "manifest-no-id-index.json"


def use_id_index(shards: Path, on: bool) -> None:
    """Point ``shards/manifest.json`` at the id index (prepare's layout) or not (the footer path)."""
    with_index = shards / "manifest-with-id-index.json"
    if not with_index.exists():
        shutil.copyfile(shards / "manifest.json", with_index)
    shutil.copyfile(with_index if on else shards / NO_INDEX_MANIFEST, shards / "manifest.json")


# ---------------------------------------------------------------------- counting, in every process

#: This process's current phase (set by the wrappers below), and its record file.
_phase = {"name": ""}
_log: dict[str, Any] = {"fd": None}


def _record(**fields: Any) -> None:
    if _log["fd"] is None:
        folder = os.environ.get(LOG_ENV)
        if not folder:
            return
        _log["fd"] = os.open(os.path.join(folder, f"{os.getpid()}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(_log["fd"], (json.dumps(dict(fields, t=time.time(), pid=os.getpid())) + "\n").encode())


class CountingFile:
    """A shard file opened for reading whose reads are recorded: bytes of the footer and of row-group data."""

    def __init__(self, path: str):
        self._f = open(path, "rb", buffering=0)
        size = os.fstat(self._f.fileno()).st_size
        tail = os.pread(self._f.fileno(), 8, size - 8) if size >= 8 else b""
        footer = int.from_bytes(tail[:4], "little") if tail[4:] == b"PAR1" else 0
        self._footer_start = size - 8 - footer
        self._split = Path(path).parent.name
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        at = self._f.tell()
        data = self._f.read() if n is None or n < 0 else self._f.read(n)
        footer = max(0, at + len(data) - max(at, self._footer_start))
        _record(k="read", phase=_phase["name"], split=self._split, data=len(data) - footer, footer=footer)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._f.close()


def _counting_parquet_file_class():
    """``pyarrow.parquet.ParquetFile`` whose local files (a path, no filesystem) are ``CountingFile`` s."""
    import pyarrow.parquet as pq

    class CountingParquetFile(pq.ParquetFile):
        def __init__(self, source, *a, **kw):
            if isinstance(source, (str, os.PathLike)) and kw.get("filesystem") is None and "://" not in str(source):
                source = CountingFile(str(source))
            super().__init__(source, *a, **kw)

    return CountingParquetFile


def counting_filesystem():
    """A pyarrow filesystem over the local one whose input files are ``CountingFile`` s (Ray Data's reads).

    Its handler is this module's ``CountingHandler`` under the name Ray's workers import it by."""
    import bench_bigearthnet
    import pyarrow.fs as pafs

    return pafs.PyFileSystem(bench_bigearthnet.CountingHandler())


try:
    import pyarrow.fs as _pafs

    class CountingHandler(_pafs.FileSystemHandler):
        """Reads of the local filesystem through ``CountingFile``; nothing else (a reader's filesystem)."""

        def __init__(self):
            self.local = _pafs.LocalFileSystem()

        def __eq__(self, other):
            return isinstance(other, CountingHandler)

        def __ne__(self, other):
            return not self == other

        def get_type_name(self):
            return "counting-local"

        def normalize_path(self, path):
            return self.local.normalize_path(path)

        def get_file_info(self, paths):
            return self.local.get_file_info(paths)

        def get_file_info_selector(self, selector):
            return self.local.get_file_info(selector)

        def open_input_file(self, path):
            import pyarrow as pa

            return pa.PythonFile(CountingFile(path), mode="r")

        open_input_stream = open_input_file

        def _read_only(self, *a, **kw):
            raise NotImplementedError("a counting filesystem only reads")

        create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
        move = copy_file = open_output_stream = open_append_stream = _read_only
except ImportError:  # pragma: no cover - pyarrow is a raydal dependency
    pass


def _timed_phase(fn, name: str):
    """``fn`` recording its seconds (and this process's peak RSS) under phase ``name``; reads inside count there."""

    def wrapper(*a, **kw):
        before, _phase["name"] = _phase["name"], name
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            _phase["name"] = before
            _record(k="phase", phase=name, seconds=time.perf_counter() - t0, hwm=_vm("VmHWM:"))

    wrapper.__wrapped__ = fn
    return wrapper


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))


#: (owner, attribute, original) of every patch this process made (``restore`` undoes them).
_patches: list[tuple[Any, str, Any]] = []


def _patch(owner: Any, attr: str, value: Any) -> None:
    _patches.append((owner, attr, owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)))
    setattr(owner, attr, value)


def restore() -> None:
    """Undo this process's patches, newest first (the driver's, so that an embedding process is left as it was)."""
    while _patches:
        owner, attr, value = _patches.pop()
        setattr(owner, attr, value)
    if _log["fd"] is not None:
        os.close(_log["fd"])
        _log["fd"] = None


#: Phase timers: module -> [(function, phase)], wrapped as each module is imported, so that a worker
#: which never trains imports no torch for them.
WORKER_PHASES = {
    "raydal.training.shares": [("read_share", "read"), ("evaluation_part", "evaluate")],
    "raydal.training.loop": [("fit", "train")],
    "raydal.query.scoring": [("score_pool", "score"), ("merge_pool_scores", "merge")],
}


def _patch_module(module: Any, attrs: list[tuple[str, str]]) -> None:
    for attr, phase in attrs:
        if hasattr(module, attr):
            _patch(module, attr, _timed_phase(getattr(module, attr), phase))


def install_counting(phases: dict[str, list[tuple[str, str]]]) -> None:
    """Count every local Parquet file read of this process; time ``phases`` (now if imported, else after import)."""
    import importlib.abc
    import importlib.machinery

    import pyarrow.parquet as pq

    if os.environ.get(COUNT_ENV, "1") != "0":
        _patch(pq, "ParquetFile", _counting_parquet_file_class())
    waiting = {}
    for name, attrs in phases.items():
        if name in sys.modules:
            _patch_module(sys.modules[name], attrs)
        else:
            waiting[name] = attrs

    class AfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in waiting:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module, _attrs=waiting.pop(name)):
                run(module)
                _patch_module(module, _attrs)

            spec.loader.exec_module = exec_module
            return spec

    if waiting:
        sys.meta_path.insert(0, AfterImport())


def worker_setup() -> None:
    """Ray's ``worker_process_setup_hook`` in every worker: the stand-in (by import path: a worker imports
    torch only when it builds a model), read counting and phase timers."""
    from raydal.models import registry

    registry.register_model("standin_sleep", "standin:standin_sleep")
    if os.environ.get(LOG_ENV):
        install_counting(WORKER_PHASES)


# ---------------------------------------------------------------------- the driver


class PeakSampler:
    """The highest resident memory of this process seen by a 50 ms sampling thread (bytes): ``peak`` in
    all (VmRSS), ``peaks["anon"]`` its own heap, ``peaks["shmem"]`` pages of Ray's object store it maps."""

    FIELDS = {"VmRSS:": "rss", "RssAnon:": "anon", "RssShmem:": "shmem"}

    def __init__(self):
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> int:
        return self.peaks["rss"]

    def _sample(self):
        with open("/proc/self/status") as f:
            for line in f:
                key = self.FIELDS.get(line.split(" ", 1)[0].split("\t", 1)[0])
                if key:
                    self.peaks[key] = max(self.peaks.get(key, 0), int(line.split()[1]) * 1024)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.05)

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def instrument_driver(waits: list[float]) -> None:
    """Time the driver's phases and its waits on Ray calls (``_record``, ``waits``); count its reads."""
    import raydal.al.state
    import raydal.distributed.executor
    import raydal.distributed.score_data
    import raydal.distributed.train
    import raydal.query.base
    import raydal.query.candidates

    install_counting({})

    def waited(fn, name):
        timed = _timed_phase(fn, name)

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return timed(*a, **kw)
            finally:
                waits.append(time.perf_counter() - t0)

        return wrapper

    train = raydal.distributed.train
    _patch(train, "train_with_ray", waited(train.train_with_ray, "ray:train_with_ray"))
    data = raydal.distributed.score_data
    _patch(data, "score_pool_data", waited(data.score_pool_data, "ray:score_pool_data"))

    def read_parquet(files, columns):  # Ray Data's reads through a counting filesystem
        import ray

        ctx = ray.data.DataContext.get_current()
        before, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
        try:
            if os.environ.get(COUNT_ENV, "1") == "0":
                return ray.data.read_parquet(files, columns=columns)
            return ray.data.read_parquet(files, columns=columns, filesystem=counting_filesystem())
        finally:
            ctx.use_datasource_v2 = before

    _patch(data, "_read_parquet", read_parquet)
    base = raydal.query.base.QueryStrategy
    _patch(base, "select", _timed_phase(base.select, "select"))
    store = raydal.al.state.StateStore
    _patch(store, "save", _timed_phase(store.save, "save"))
    _patch(store, "save_probs", _timed_phase(store.save_probs, "save"))
    ex = raydal.distributed.executor
    _patch(ex, "save_pool_scores", _timed_phase(ex.save_pool_scores, "save"))
    scores = raydal.query.candidates.PoolScores
    _patch(scores, "assemble", classmethod(_timed_phase(scores.assemble.__func__, "merge")))


def run(args) -> dict[str, Any]:
    import ray
    import simulated

    from raydal.al.loop import ActiveLearner
    from raydal.config import resolve_config
    from raydal.distributed.executor import RayExecutor
    from raydal.models import registry

    work = Path(args.workdir or tempfile.mkdtemp(prefix="raydal-bench-ben-"))
    shards = work / f"shards-{args.pool}-{args.val}-{args.test}-{args.image_size}-{args.layout_size}"
    t0 = time.perf_counter()
    if not (shards / "manifest.json").exists():  # a child process writes them: the driver's memory stays its own
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--write-shards",
                str(shards),
                "--pool",
                str(args.pool),
                "--val",
                str(args.val),
                "--test",
                str(args.test),
                "--image-size",
                str(args.image_size),
                "--layout-size",
                str(args.layout_size),
            ],
            check=True,
        )
    t_write = time.perf_counter() - t0
    use_id_index(shards, not args.no_id_index)
    logs = work / f"io-{time.time_ns()}"
    logs.mkdir()
    os.environ[LOG_ENV] = str(logs)  # inherited by the cluster's raylets and their workers
    os.environ[COUNT_ENV] = "0" if args.no_count_bytes else "1"
    pixels = args.image_size**2 * BANDS
    os.environ["RAYDAL_STANDIN_MS_PER_ROW"] = str(args.ns_per_value * pixels / 1e6)
    registry.register_model("standin_sleep", "standin:standin_sleep")  # by import path: no torch here
    waits: list[float] = []
    instrument_driver(waits)
    overrides = dict(
        shards_dir=str(shards),
        state_dir=str(work / f"state-{time.time_ns()}"),
        backbone="standin_sleep",
        executor="ray",
        iterations=args.iterations,
        eval_max_samples=args.eval_max_samples,
    )
    for name in ("num_workers", "score_workers", "cpus_per_worker", "score_batch_size"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.small:
        overrides.update(initial_labeled=args.initial, b=args.b)
    train = {"epochs": args.epochs} if args.epochs is not None else {}
    if train:
        overrides["train"] = train
    cfg = resolve_config("bigearthnet", overrides=overrides).run

    cluster = simulated.start_cluster(
        args.nodes, args.cpus, f"/tmp/raydal-ben-{os.getpid()}", setup_hook="bench_bigearthnet.worker_setup"
    )
    res: dict[str, Any] = {
        "benchmark": "bigearthnet_iteration",
        "pool": args.pool,
        "val": args.val,
        "test": args.test,
        "image": [args.image_size, args.image_size, BANDS],
        "classes": 19,
        "id_chars": len(patch_names(1)[0]),
        "id_index": not args.no_id_index,
        "layout": _layout(shards, args),
        "write_seconds": round(t_write, 1),
        "bytes_counted": not args.no_count_bytes,
        "stand_in": f"standin_sleep: sleeps {args.ns_per_value:g} ns x {pixels:,} values = "
        f"{args.ns_per_value * pixels / 1e3:.2f} us per row per forward pass (GIL released)",
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("state_dir", "shards_dir")},
        "cluster": f"{args.nodes} nodes x {args.cpus} logical CPUs (ray.cluster_utils.Cluster on 127.0.0.1)",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/bench_bigearthnet.py " + " ".join(args.argv),
        "steps": [],
    }
    print(
        f"# {res['pool']:,} pool + {args.val:,} val + {args.test:,} test rows of {args.image_size}x{args.image_size}"
        f"x{BANDS} ({res['layout']['gb_on_disk']:.2f} GB); {res['stand_in']}; {res['cluster']}",
        flush=True,
    )
    try:
        learner = ActiveLearner(cfg, RayExecutor(cfg), log=lambda s: print(f"  {s}", flush=True))
        for _ in range(1 + 2 * args.iterations):  # init (+ label), then train (+ evaluate), query (+ label)
            tau, phase = learner.state.iteration, learner.state.phase
            waits.clear()
            started = time.time()
            t0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
            with PeakSampler() as peak:
                learner.step()
            wall, cpu, main = time.perf_counter() - t0, time.process_time() - cpu0, time.thread_time() - main0
            res["steps"].append(
                {
                    "iteration": tau,
                    "phase": phase,
                    "start": started,
                    "end": time.time(),
                    "wall_seconds": wall,
                    "ray_wait_seconds": sum(waits),
                    "driver_seconds": wall - sum(waits),
                    "driver_cpu_seconds": cpu,
                    "driver_main_thread_cpu_seconds": main,
                    "peak_rss_bytes": peak.peak,
                    "peak_anon_bytes": peak.peaks.get("anon"),
                    "peak_shmem_bytes": peak.peaks.get("shmem"),
                }
            )
            print(
                f"step {phase}: {wall:.1f} s wall, {wall - sum(waits):.2f} s driver work outside Ray calls, "
                f"{cpu:.2f} s driver CPU ({main:.2f} s its main thread), peak RSS {peak.peak / 2**20:.0f} MiB (heap "
                f"{peak.peaks.get('anon', 0) / 2**20:.0f}, object store {peak.peaks.get('shmem', 0) / 2**20:.0f})",
                flush=True,
            )
        res["history"] = [{k: h.get(k) for k in ("n_labeled", "selected", "seconds")} for h in learner.state.history]
    finally:
        ray.shutdown()
        cluster.shutdown()
        restore()
        os.environ.pop(LOG_ENV, None)
    res["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    summarize(res, logs, cfg)
    return res


def _layout(shards: Path, args) -> dict[str, Any]:
    import pyarrow.parquet as pq

    manifest = json.loads((shards / "manifest.json").read_text())
    first = pq.ParquetFile(shards / manifest["splits"]["pool"]["files"][0]).metadata
    total = sum(f.stat().st_size for split in ("pool", "val", "test") for f in (shards / split).iterdir())
    return {
        "files": sum(len(s["files"]) for s in manifest["splits"].values()),
        "rows_per_file": first.num_rows,
        "rows_per_group": first.row_group(0).num_rows,
        "footer_bytes_per_file": first.serialized_size,
        "bytes_on_disk": total,
        "gb_on_disk": total / GB,
        "rule": (
            f"prepare's row groups for {args.layout_size}x{args.layout_size}x{BANDS} images"
            if args.layout_size
            else f"prepare's row groups for these {args.image_size}x{args.image_size}x{BANDS} images"
        ),
    }


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    import ray

    return (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {mem / 2**20:.0f} GiB RAM, "
        f"ray {ray.__version__}, load avg {os.getloadavg()[0]:.1f}"
    )


def summarize(res: dict[str, Any], logs: Path, cfg) -> None:
    """Per AL iteration: phases (seconds, bytes) from every process's records, the driver's figures, the targets.
    The first iteration's figures are also at the top level."""
    records = [json.loads(line) for f in logs.iterdir() for line in f.read_text().splitlines() if line]
    steps = res["steps"]
    res["per_iteration"] = [
        iteration_summary(res, records, steps[i], steps[i + 1], cfg, history)
        for i, history in zip(range(1, len(steps) - 1, 2), res["history"])
    ]
    res.update(res["per_iteration"][0])
    hwm = [r["hwm"] for r in records if r["k"] == "phase" and r["pid"] != os.getpid()]
    res["worker_peak_rss_bytes"] = max(hwm) if hwm else None
    print_summary(res)


def iteration_summary(
    res: dict[str, Any],
    records: list[dict[str, Any]],
    train_step: dict[str, Any],
    query_step: dict[str, Any],
    cfg,
    history: dict[str, Any],
) -> dict[str, Any]:
    """One iteration's figures from the records between the start of its train step and the end of its query step."""
    driver = os.getpid()
    window = [r for r in records if train_step["start"] <= r["t"] <= query_step["end"]]
    reads: dict[str, dict[str, int]] = {}
    for r in (r for r in window if r["k"] == "read"):
        phase = r["phase"] or (
            "driver" if r["pid"] == driver else "score" if r["t"] >= query_step["start"] else "other"
        )
        if phase.startswith("ray:"):
            phase = "driver"  # the driver's own reads while it plans a Ray call (locating the labeled rows)
        row = reads.setdefault(phase, {})
        row[f"{r['split']}_data"] = row.get(f"{r['split']}_data", 0) + r["data"]
        row["footer"] = row.get("footer", 0) + r["footer"]
        row["total"] = row.get("total", 0) + r["data"] + r["footer"]
    # seconds per phase: summed per process (val then test), the slowest process (ranks run side by side)
    per_pid: dict[tuple[str, str], dict[int, float]] = {}
    for r in (r for r in window if r["k"] == "phase"):
        key = (r["phase"], "driver" if r["pid"] == driver else "workers")
        per_pid.setdefault(key, {})[r["pid"]] = per_pid.get(key, {}).get(r["pid"], 0.0) + r["seconds"]

    def secs(phase: str, where: str) -> float | None:
        found = per_pid.get((phase, where))
        return max(found.values()) if found else None

    data_path = cfg.score_workers > 0
    table = {
        "read": secs("read", "workers"),
        "train": secs("train", "workers"),
        "evaluate": secs("evaluate", "workers"),
        "score": secs("ray:score_pool_data", "driver") if data_path else secs("score", "workers"),
        "merge": secs("merge", "driver" if data_path else "workers"),
        "select": secs("select", "driver"),
        "save": secs("save", "driver"),
    }
    train_wall = secs("ray:train_with_ray", "driver") or 0.0
    in_run = sum(table[k] or 0.0 for k in ("train", "evaluate") + (() if data_path else ("score", "merge")))
    steps = [train_step, query_step]
    out: dict[str, Any] = {
        "iteration_index": train_step["iteration"],
        "n_labeled": history["n_labeled"],
        "selected": len(history.get("selected") or []),
        "phases_seconds": {k: (round(v, 3) if v is not None else None) for k, v in table.items()},
        "train_run_seconds": {
            "wall": round(train_wall, 3),
            "train+evaluate(+score) in the workers": round(in_run, 3),
            "start, waits, checkpoint copy, teardown": round(train_wall - in_run, 3),
        },
        "bytes_read": reads,
        "iteration": {
            "wall_seconds": round(sum(s["wall_seconds"] for s in steps), 3),
            "driver_seconds": round(sum(s["driver_seconds"] for s in steps), 3),
            "driver_cpu_seconds": round(sum(s["driver_cpu_seconds"] for s in steps), 3),
            "driver_main_thread_cpu_seconds": round(sum(s["driver_main_thread_cpu_seconds"] for s in steps), 3),
            "driver_peak_anon_bytes": max(s["peak_anon_bytes"] or 0 for s in steps),
            "driver_peak_shmem_bytes": max(s["peak_shmem_bytes"] or 0 for s in steps),
            "driver_peak_rss_bytes": max(s["peak_rss_bytes"] for s in steps),
        },
    }
    row_bytes = res["image"][0] * res["image"][1] * BANDS + res["classes"] + res["id_chars"]
    fit_read = reads.get("read", {})
    labeled_bytes = out["n_labeled"] * row_bytes
    out["targets"] = {
        "driver_work_le_5_s": out["iteration"]["driver_main_thread_cpu_seconds"] <= 5.0,
        "driver_peak_rss_le_1_gb": out["iteration"]["driver_peak_rss_bytes"] <= GB,
        "labeled_rows_bytes": labeled_bytes,
        "fit_read_data_bytes": fit_read.get("pool_data", 0),
        "fit_read_footer_bytes": fit_read.get("footer", 0),
        "fit_read_data_ratio": fit_read.get("pool_data", 0) / labeled_bytes,
        "fit_read_ratio_with_footers": fit_read.get("total", 0) / labeled_bytes,
        "fit_read_le_2x": fit_read.get("total", 0) <= 2 * labeled_bytes,
    }
    if not res["bytes_counted"]:
        out["targets"].update({k: None for k in out["targets"] if k.startswith("fit_read")})
    return out


def print_summary(res: dict[str, Any]) -> None:
    print(f"# {res['machine']}")
    for it_res in res["per_iteration"]:
        it, t = it_res["iteration"], it_res["targets"]
        print(
            f"# iteration {it_res['iteration_index']}: {it_res['n_labeled']:,} labeled, {it_res['selected']:,} selected"
        )
        print(f"{'phase':<10s} {'seconds':>8s} {'MB read':>9s}")
        for phase, sec in it_res["phases_seconds"].items():
            mb = it_res["bytes_read"].get(phase, {}).get("total", 0) / 1e6
            print(f"{phase:<10s} {sec if sec is not None else float('nan'):8.2f} {mb:9.1f}")
        print(f"Ray Train run: {it_res['train_run_seconds']}")
        print(f"driver reads: {it_res['bytes_read'].get('driver', {}).get('total', 0) / 1e6:.1f} MB")
        print(
            f"iteration: {it['wall_seconds']:.1f} s wall, driver work {it['driver_seconds']:.2f} s outside Ray calls, "
            f"driver CPU {it['driver_cpu_seconds']:.2f} s (main thread {it['driver_main_thread_cpu_seconds']:.2f} s; "
            f"<= 5 s: {t['driver_work_le_5_s']}), driver peak RSS {it['driver_peak_rss_bytes'] / 1e6:.0f} MB "
            f"(<= 1 GB: {t['driver_peak_rss_le_1_gb']}; heap {it['driver_peak_anon_bytes'] / 1e6:.0f} MB, object "
            f"store {it['driver_peak_shmem_bytes'] / 1e6:.0f} MB)"
        )
        if res["bytes_counted"]:
            print(
                f"fit read {t['fit_read_data_bytes'] / 1e6:.2f} MB of row groups + {t['fit_read_footer_bytes'] / 1e6:.2f} "
                f"MB of footers for {t['labeled_rows_bytes'] / 1e6:.2f} MB of labeled rows: "
                f"{t['fit_read_data_ratio']:.2f}x (with footers {t['fit_read_ratio_with_footers']:.2f}x; <= 2x: "
                f"{t['fit_read_le_2x']})"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=550_000)
    p.add_argument("--val", type=int, default=120_000)
    p.add_argument("--test", type=int, default=120_000)
    p.add_argument("--image-size", type=int, default=8, help="image side in pixels (12 bands)")
    p.add_argument(
        "--layout-size",
        type=int,
        default=REAL_SIZE,
        help="write row groups as prepare does for images of this side (0: --image-size)",
    )
    p.add_argument(
        "--ns-per-value",
        type=float,
        default=0.75,
        help="the stand-in's sleep per pixel-band value and row of a forward pass (0.75: one H200 "
        "scoring ~4,000 TreeSatAI images of 288x288x4 a second)",
    )
    p.add_argument("--num-workers", type=int, help="Ray Train workers (default: ALConfig's)")
    p.add_argument(
        "--score-workers", type=int, help="Ray Data scoring actors, 0: in the training workers (default: ALConfig's)"
    )
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray Train worker (default: ALConfig's)")
    p.add_argument("--score-batch-size", type=int, help="default: ALConfig's")
    p.add_argument("--eval-max-samples", type=int, help="evaluate val and test on this many rows each (default: all)")
    p.add_argument("--epochs", type=int, help="default: the bigearthnet protocol's")
    p.add_argument(
        "--iterations",
        type=int,
        default=1,
        help="AL iterations to run (the first reads every file's footer in the driver; later ones use its cache)",
    )
    p.add_argument("--initial", type=int, default=100, help="--small: the initial labeled set")
    p.add_argument("--b", type=int, default=100, help="--small: b")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="logical CPUs per node")
    p.add_argument(
        "--no-count-bytes",
        action="store_true",
        help="time the phases without counting bytes read (counting passes every read through Python: slower reads)",
    )
    p.add_argument("--workdir", help="reuses shards already written there")
    p.add_argument(
        "--no-id-index",
        action="store_true",
        help="run on the same shards as a set written before "
        "prepare's id index (ids-<split>.parquet): the driver and workers read every file's footer for ids",
    )
    p.add_argument("--json")
    p.add_argument("--write-shards", help=argparse.SUPPRESS)
    small = {"pool": 10_000, "val": 1_000, "test": 1_000, "epochs": 2}
    p.add_argument("--small", action="store_true", help=f"smoke size: {small}, 100 initial + b = 100 unless given")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.write_shards:
        write_shards(Path(args.write_shards), args.pool, args.val, args.test, args.image_size, args.layout_size)
        return {}
    if args.small:
        for name, value in small.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    result = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


def _loopback_token() -> None:
    """Token authentication on, with a token of this run's own (as tests/conftest.py does)."""
    import secrets

    if "RAY_AUTH_MODE" not in os.environ:
        token = Path(tempfile.mkdtemp(prefix="raydal-bench-auth-")) / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    _loopback_token()
    main()
