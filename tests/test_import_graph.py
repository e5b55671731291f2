"""Imports inside raydal.models and raydal.query run one way (no circles).

A static check of the import graph: every ``import`` / ``from ... import`` in the
package's source, at module level, inside functions or under ``TYPE_CHECKING``,
is an edge. A circle (e.g. registry -> net -> backbones -> registry) means a
module cannot be imported on its own and the layering has a knot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "raydal"
ACYCLIC_PACKAGES = ("raydal.models", "raydal.query")


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the raydal modules it imports (``from pkg import submodule`` points at the submodule)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # ``import raydal.models.net as x`` style
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]], within: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components of more than one module among the modules under ``within``."""
    nodes = [n for n in graph if n.startswith(within)]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in nodes:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_circle():
    graph = {
        "raydal.models.a": {"raydal.models.b"},
        "raydal.models.b": {"raydal.models.c"},
        "raydal.models.c": {"raydal.models.a"},
        "raydal.models.d": {"raydal.models.a"},
    }
    assert cycles(graph, ("raydal.models",)) == [["raydal.models.a", "raydal.models.b", "raydal.models.c"]]


def test_the_graph_has_the_known_edges():
    graph = import_graph()
    assert "raydal.models.registry" in graph["raydal.models.backbones"]
    assert "raydal.query.candidates" in graph["raydal.query.base"]
    assert "raydal.query.base" in graph["raydal.query.scoring"]


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_no_import_circles(package):
    assert cycles(import_graph(), (package,)) == []


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_models_and_query_import_no_ray(package):
    graph = import_graph()
    assert not any(t.startswith("raydal.distributed") for n, ts in graph.items() if n.startswith(package) for t in ts)


# ---------------------------------------------------------------------- the driver and the CLI import no torch

#: Run in a fresh interpreter: the AL driver's objects and the CLI verbs that neither train nor predict,
#: each followed by a check that torch is still not imported (printed as one JSON line per step).
_TORCH_FREE_SCRIPT = r"""
import contextlib, io, json, sys
from pathlib import Path

import numpy as np

work, waiting, finished = (Path(a) for a in sys.argv[1:4])
steps = []

def step(name, fn):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            fn()
        except SystemExit as e:  # --help
            assert e.code in (0, None), (name, e.code)
    steps.append((name, "torch" in sys.modules))

from raydal.cli import main

step("raydal --help", lambda: main(["--help"]))
for verb in ("synth", "prepare", "run", "sweep", "report", "export", "import-labels", "predict"):
    step(f"raydal {verb} --help", lambda verb=verb: main([verb, "--help"]))
step("raydal synth", lambda: main(["synth", "ucmerced", str(work / "archive"), "--n", "40", "--size", "16"]))
step("raydal prepare", lambda: main(["prepare", "ucmerced", str(work / "archive"), str(work / "shards"),
                                     "--size", "16", "--shard-size", "8"]))
step("raydal run --print-config", lambda: main(["run", "ucmerced", "--shards-dir", str(work / "shards"),
                                                "--state-dir", str(work / "state"), "--print-config"]))
step("raydal report", lambda: main(["report", str(finished), "--out", str(work / "report")]))
step("raydal export", lambda: main(["export", str(waiting), "--out", str(work / "export")]))

def fill_and_import():
    import csv
    rows = list(csv.DictReader(open(work / "export" / "batch.csv")))
    classes = json.loads((Path(waiting) / "classes.json").read_text())
    for r in rows:
        r["labels"] = classes[0]
    with open(work / "filled.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    main(["import-labels", str(waiting), str(work / "filled.csv")])
step("raydal import-labels", fill_and_import)

# The AL driver actor's objects, as raydal run builds them (the Ray executor; no Ray call is made).
from raydal.config import ALConfig
cfg = ALConfig(dataset="ucmerced", shards_dir=str(work / "shards"), state_dir=str(work / "driver-state"),
               strategy="mge+clustering", b=4, m=2, initial_labeled=8, backbone="smallcnn", executor="ray")
step("ALConfig.train_config()", cfg.train_config)
from raydal.distributed.driver import DriverService
service = DriverService(cfg.to_dict())
learner, executor = service.learner, service.learner.executor
step("DriverService: init phase", service.step)
step("executor.model_spec(), train_config, amp", lambda: (executor.model_spec(), executor.train_config(1), executor.amp))

def resolve():
    from raydal.query.clustering import resolve_backend
    assert resolve_backend("auto") in ("faiss", "torch")
step("resolve_backend('auto')", resolve)
step("import the Ray launchers", lambda: __import__("raydal.distributed.train") and __import__("raydal.distributed.score"))

def query_bookkeeping():
    from raydal.al.executor import QueryResult
    from raydal.distributed.executor import load_pool_scores, query_key, save_pool_scores
    from raydal.query import get_strategy
    from raydal.query.candidates import PoolScores
    labeled = learner._labeled_mask()
    b, prev = learner._query_inputs(labeled)
    unlabeled = executor.pool_ids()[~labeled]
    rng = np.random.default_rng(0)
    k = executor.candidate_count(b)
    scores = PoolScores(ids=unlabeled, probs=rng.random((len(unlabeled), 3), dtype=np.float32),
                        uncertainty_name="mge", uncertainty=rng.random(len(unlabeled)), cand_ids=unlabeled[:k],
                        cand_uncertainty=np.linspace(1, 0, k), cand_embeddings=rng.random((k, 5), dtype=np.float32))
    key = query_key(cfg.strategy, k, learner.state.labeled_ids(), (scores.ids, scores.probs))
    save_pool_scores(work / "scores.npz", key, scores)
    assert load_pool_scores(work / "scores.npz", key) is not None
    picks = get_strategy("mge+clustering").select(b, scores=scores, m=2, seed=0)  # k-means++ with backend auto
    result = QueryResult.from_scores(picks, scores, 0.0, 0.0)
    learner.store.save_probs("iter-0000.npz", result.pool_ids, result.pool_probs)
step("query bookkeeping and selection", query_bookkeeping)

print(json.dumps(steps))
"""


def test_the_driver_and_the_cli_import_no_torch(tmp_path):
    """The AL driver actor and every CLI verb that neither trains nor predicts run without importing torch."""
    import json
    import subprocess
    import sys

    from raydal.al.state import ALState, StateStore

    finished = tmp_path / "finished"
    run = ALState(config={"strategy": "random", "seed": 0}, fingerprint="x", phase="done")
    run.history = [
        {
            "iteration": i,
            "n_labeled": 10 + 5 * i,
            "test": {"micro_f1": 0.1 * i, "macro_f1": 0.05 * i},
            "val": {"micro_f1": 0.1 * i, "macro_f1": 0.05 * i},
            "seconds": {"train": 1.0, "eval": 0.5, "score": 0.25, "select": 0.125},
        }
        for i in range(3)
    ]
    StateStore(str(finished)).save(run)
    waiting = tmp_path / "waiting"
    # A human-mode state waiting for labels needs shards: the script prepares them first, then this state
    # is written by the script's own export target; build it in a first subprocess pass below.
    code = (
        "import sys, json; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
        "from raydal.data.synth import synthesize; from raydal.data.shards import prepare, load_manifest;"
        "from labeling_state import make_waiting_state;"
        "w = Path(sys.argv[1]); synthesize('ucmerced', w / 'a', n=24, size=16, seed=0);"
        "prepare('ucmerced', w / 'a', w / 's', size=16, seed=0, shard_size=8);"
        "make_waiting_state(w / 's', Path(sys.argv[2]), n_labeled=3, n_pending=3);"
        "(Path(sys.argv[2]) / 'classes.json').write_text(json.dumps(list(load_manifest(w / 's').classes)))"
    )
    tests_al = str(Path(__file__).resolve().parent / "al")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "w"), str(waiting), tests_al], check=True)
    out = subprocess.run(
        [sys.executable, "-c", _TORCH_FREE_SCRIPT, str(tmp_path / "work"), str(waiting), str(finished)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(steps) == 21
    assert [name for name, torch_loaded in steps if torch_loaded] == []
