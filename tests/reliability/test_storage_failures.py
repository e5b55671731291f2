"""Storage failing under a run (disk full, a storage URI that stops answering) while it saves the
state or a checkpoint: a clear error, the previous state intact, the run resumable once storage is back."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from rel_helpers import ROOT, assert_same_run, cli_env, read_state, run_job

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.al.state import STATE_FILE, StateStore
from raydal.data.shards import load_manifest, read_ids
from raydal.exceptions import StorageError

pytestmark = pytest.mark.reliability


def _file_size_limit(n_bytes: int):
    """preexec_fn: no file of the child may grow past ``n_bytes`` (writes then fail with EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))


def test_disk_full_while_saving_a_checkpoint(reference_run, tiny_shards, tmp_path):
    state_dir = tmp_path / "state"
    # state.json (~6 kB) fits, the smallcnn checkpoint (~180 kB) does not
    full = run_job(tiny_shards, state_dir, preexec_fn=_file_size_limit(100_000))
    assert full.returncode == 2, full.stdout + full.stderr
    assert "Storage failed while training iteration 0" in full.stderr and "File too large" in full.stderr
    assert "The previous state is intact" in full.stderr and "run the same command again" in full.stderr
    survived = read_state(state_dir)
    assert survived["phase"] == "train" and len(survived["labeled"]) == 10

    done = run_job(tiny_shards, state_dir)  # space is back
    assert done.returncode == 0 and "resuming" in done.stdout, done.stdout + done.stderr
    assert_same_run(read_state(state_dir), reference_run["state"], set(read_ids(load_manifest(tiny_shards), "pool")))


def test_disk_full_while_saving_the_state(reference_run, tmp_path):
    import shutil

    state_dir = tmp_path / "state"
    shutil.copytree(reference_run["state_dir"], state_dir)
    before = (state_dir / STATE_FILE).read_bytes()
    grow = (
        "import sys\n"
        "from raydal.al.state import StateStore\n"
        "store = StateStore(sys.argv[1])\n"
        "with store.lock('grow'):\n"
        "    s = store.load()\n"
        "    s.human_labels = {f'x{i}': [0, 1, 2] for i in range(2000)}\n"
        "    store.save(s)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", grow, str(state_dir)],
        env=cli_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_file_size_limit(2 * len(before)),
    )
    assert out.returncode == 1 and "StorageError: Storage failed while writing" in out.stderr, out.stderr
    assert (state_dir / STATE_FILE).read_bytes() == before
    assert not list(state_dir.glob(f".{STATE_FILE}.*.tmp"))
    assert StateStore(str(state_dir)).load().phase == "done"


class _FlakyFS:
    """A pyarrow filesystem whose writes time out while ``down`` (reads keep working)."""

    def __init__(self, fs):
        self._fs, self.down = fs, False

    def _check(self):
        if self.down:
            raise OSError("When uploading to storage: Couldn't connect to server (timed out)")

    def open_output_stream(self, *a, **k):
        self._check()
        return self._fs.open_output_stream(*a, **k)

    def move(self, *a, **k):
        self._check()
        return self._fs.move(*a, **k)

    def create_dir(self, *a, **k):
        self._check()
        return self._fs.create_dir(*a, **k)

    def __getattr__(self, name):
        return getattr(self._fs, name)


def test_storage_uri_stops_answering(make_uri_config, monkeypatch, tmp_path):
    import raydal.utils

    reference = make_uri_config(str(tmp_path / "reference"))
    expected = ActiveLearner(reference, LocalExecutor(reference), log=lambda s: None).run().state_dict()

    cfg = make_uri_config(f"file://{tmp_path}/remote")
    learner = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None)
    flaky = _FlakyFS(learner.store._fs)
    learner.store._fs = flaky
    real_upload = raydal.utils.upload_dir

    def upload(local, uri):
        flaky._check()
        return real_upload(local, uri)

    monkeypatch.setattr(raydal.utils, "upload_dir", upload)
    assert learner.step()  # init + labels saved
    remote_state = tmp_path / "remote" / STATE_FILE
    saved = remote_state.read_bytes()

    flaky.down = True  # the checkpoint upload times out
    with pytest.raises(StorageError, match="uploading the checkpoint.*timed out.*previous state is intact"):
        learner.step()
    assert remote_state.read_bytes() == saved

    flaky.down = False
    assert learner.step()  # trained: phase query
    saved = remote_state.read_bytes()
    flaky.down = True  # the state (probabilities, then state.json) save times out
    with pytest.raises(StorageError, match="writing .*timed out"):
        learner.step()
    assert remote_state.read_bytes() == saved

    flaky.down = False  # storage is back: a fresh job resumes
    final = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run().state_dict()
    assert final["phase"] == expected["phase"] == "done"
    assert final["labeled"] == expected["labeled"]
    assert [h.get("selected") for h in final["history"]] == [h.get("selected") for h in expected["history"]]


@pytest.fixture
def make_uri_config(tiny_shards, tmp_path, monkeypatch):
    from raydal.config import ALConfig

    monkeypatch.setenv("RAYDAL_CACHE", str(tmp_path / "cache"))

    def make(state_dir: str) -> ALConfig:
        return ALConfig(
            dataset="ucmerced",
            shards_dir=str(tiny_shards),
            state_dir=state_dir,
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

    return make
