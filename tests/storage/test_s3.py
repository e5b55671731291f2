"""Shards and state dirs on s3://, end to end, against a real S3 API (moto's server) on 127.0.0.1.

The server is started by the module fixture and configured through the standard AWS
environment only (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION), as a user configures raydal for a bucket.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import free_port

from raydal.cli import main
from raydal.data.shards import load_manifest, prepare, read_ids, read_split
from raydal.data.synth import synthesize
from raydal.exceptions import ConfigError, DatasetNotFoundError
from raydal.utils import local_dir, upload_dir

BUCKET = "raydal-test"
SHARDS = f"s3://{BUCKET}/shards"
STATE = f"s3://{BUCKET}/runs/folder"
#: A tiny human-mode run: smallcnn, 1 epoch, queries of 3 images.
RUN_ARGS = (
    "--mode",
    "human",
    "--executor",
    "local",
    "--strategy",
    "random",
    "--backbone",
    "smallcnn",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--lr",
    "0.05",
    "--b",
    "3",
    "--initial-labeled",
    "6",
    "--iterations",
    "1",
    "--trials",
    "1",
    "--seed",
    "0",
    "--no-report",
)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A boto3 client of an S3 API served by moto on 127.0.0.1 (one empty bucket), with the AWS
    environment of this module pointing at it; the server is stopped by its PID afterwards."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's S3 server did not start on {endpoint}:\n{log.read_text()}")
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3"):
                mp.delenv(name, raising=False)
            for name, value in (
                ("AWS_ENDPOINT_URL", endpoint),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ):
                mp.setenv(name, value)
            mp.setenv("RAYDAL_CACHE", str(tmp_path_factory.mktemp("raydal-cache")))  # checkpoint downloads
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _state(client) -> dict:
    return json.loads(client.get_object(Bucket=BUCKET, Key="runs/folder/state.json")["Body"].read())


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A folder archive of 24 images, half of them without labels (human mode has something to ask)."""
    return synthesize(
        "folder", tmp_path_factory.mktemp("s3-archive") / "archive", n=24, size=16, seed=2, labeled_share=0.5
    )


def _label_rows(exported: Path, classes: list[str]) -> str:
    """The exported batch.csv with every row answered (one class per image), as CSV text."""
    rows = list(csv.DictReader(open(exported / "batch.csv", newline="")))
    for k, row in enumerate(rows):
        row["labels"] = classes[k % len(classes)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def test_prepare_run_export_import_predict_on_s3(s3, archive, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI mistaken for a path would land here as ./s3:/...
    labels = ["--labels", str(archive / "labels.csv"), "--classes", str(archive / "classes.txt")]

    # prepare straight into the bucket: the same shards as a local prepare, manifest.json included
    assert main(["prepare", "folder", str(archive), SHARDS, "--shard-size", "8", *labels]) == 0
    local = prepare(
        "folder",
        archive,
        tmp_path / "local-shards",
        shard_size=8,
        labels=archive / "labels.csv",
        classes=archive / "classes.txt",
    )
    manifest = load_manifest(SHARDS)
    assert manifest.root == SHARDS and manifest.splits == local.splits
    files = [f for split in manifest.splits for f in manifest.split_files(split)]
    files += [manifest.ids_file(split) for split in manifest.splits]  # the id index beside the manifest
    assert all(f.startswith(SHARDS + "/") for f in files)
    assert _keys(s3, "shards/") == sorted(["shards/manifest.json"] + [f[len(f"s3://{BUCKET}/") :] for f in files])
    for split in manifest.splits:
        on_s3, here = read_split(manifest, split), read_split(local, split)
        assert on_s3["id"].tolist() == here["id"].tolist()
        np.testing.assert_array_equal(on_s3["image"], here["image"])
        np.testing.assert_array_equal(on_s3["labels"], here["labels"])
    assert len(read_ids(manifest, "pool", labeled=False)) == 12

    # a human-mode run with shards and state on S3: trains on the archive's 6 labeled pool images,
    # uploads its checkpoint, and stops for the labels of its query
    assert main(["run", "folder", "--shards-dir", SHARDS, "--state-dir", STATE, *RUN_ARGS]) == 0
    state = _state(s3)
    assert state["phase"] == "label" and [h["n_labeled"] for h in state["history"]] == [6]
    pending = state["pending"]["ids"]
    assert len(pending) == 3 and set(pending) <= set(read_ids(manifest, "pool").tolist())
    checkpoint = state["history"][0]["checkpoint"]
    assert checkpoint.startswith(STATE + "/checkpoints/")
    ckpt_key = checkpoint[len(f"s3://{BUCKET}/") :]
    assert {f"{ckpt_key}/model.pt", f"{ckpt_key}/model.json"} <= set(_keys(s3, ckpt_key + "/"))

    # predict with the run on S3 over the shards on S3, into a local folder
    assert main(["predict", STATE, SHARDS, str(tmp_path / "pred"), "--executor", "local"]) == 0
    table = pq.read_table(tmp_path / "pred" / "predictions.parquet").to_pydict()
    every = {str(i) for split in manifest.splits for i in read_ids(manifest, split)}
    assert sorted(table["id"]) == sorted(every) and len(table["id"]) == 24
    probs = np.array([table[f"p_{c}"] for c in manifest.classes]).T
    assert probs.shape == (24, len(manifest.classes)) and ((probs > 0) & (probs < 1)).all()
    # the same checkpoint, named by its URI, over the same shards prepared locally: the same numbers
    assert (
        main(
            ["predict", checkpoint, str(local.root), str(tmp_path / "pred-local"), "--executor", "local", "--no-export"]
        )
        == 0
    )
    again = pq.read_table(tmp_path / "pred-local" / "predictions.parquet").to_pydict()
    assert again["id"] == table["id"] and again["predicted"] == table["predicted"]
    np.testing.assert_allclose(np.array([again[f"p_{c}"] for c in manifest.classes]).T, probs, atol=1e-6)

    # export (a remote state dir exports into a local --out), answer, import a label file from S3
    assert main(["export", STATE, "--out", str(tmp_path / "export")]) == 0
    text = _label_rows(tmp_path / "export", manifest.classes)
    answered = {r["id"] for r in csv.DictReader(io.StringIO(text))}
    assert answered == set(pending)
    s3.put_object(Bucket=BUCKET, Key="labels/batch.csv", Body=text.encode())
    assert main(["import-labels", STATE, f"s3://{BUCKET}/labels/batch.csv"]) == 0
    state = _state(s3)
    assert state["phase"] == "train" and state["pending"] is None
    assert {sid for sid, v in state["labeled"].items() if v["by"] == "annotator"} == answered

    # the run resumes from the state on S3 and finishes
    assert main(["run", "folder", "--shards-dir", SHARDS, "--state-dir", STATE, *RUN_ARGS]) == 0
    state = _state(s3)
    assert state["phase"] == "done" and [h["n_labeled"] for h in state["history"]] == [6, 9]
    assert len(_keys(s3, "runs/folder/checkpoints/")) >= 4  # model.pt + model.json of both fits
    assert not list(tmp_path.glob("s3*"))  # nothing went to a local ./s3:/ folder


def test_missing_and_incomplete_shards_on_s3_name_the_uri(s3, archive):
    with pytest.raises(DatasetNotFoundError, match=f"s3://{BUCKET}/nowhere"):
        load_manifest(f"s3://{BUCKET}/nowhere")
    target = f"s3://{BUCKET}/partial"
    manifest = prepare(
        "folder", archive, target, shard_size=8, labels=archive / "labels.csv", classes=archive / "classes.txt"
    )
    with pytest.raises(ConfigError, match="already holds"):
        prepare("folder", archive, target, labels=archive / "labels.csv", classes=archive / "classes.txt")
    victim = manifest.split_files("val")[0]
    s3.delete_object(Bucket=BUCKET, Key=victim[len(f"s3://{BUCKET}/") :])
    with pytest.raises(DatasetNotFoundError, match="incomplete") as info:
        load_manifest(target + "/")
    assert victim in str(info.value)
    # overwrite replaces the whole set (the stale objects go), manifest.json written last
    again = prepare(
        "folder",
        archive,
        target,
        shard_size=12,
        overwrite=True,
        labels=archive / "labels.csv",
        classes=archive / "classes.txt",
    )
    assert load_manifest(target).splits == again.splits
    assert len(_keys(s3, "partial/")) == 1 + sum(len(s["files"]) + 1 for s in again.splits.values())  # + id index


def test_a_folder_uploaded_again_is_downloaded_again(s3, tmp_path):
    """``local_dir`` caches downloads, but never serves an old copy of a URI written again (a resumed
    run retraining an iteration re-uploads its checkpoint to the same place)."""
    uri = f"s3://{BUCKET}/cache-test/checkpoint"
    for k, text in enumerate(["first", "second, longer"]):
        src = tmp_path / f"v{k}"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "model.json").write_text(text)
        upload_dir(src, uri)
        assert (local_dir(uri) / "sub" / "model.json").read_text() == text
    assert list(local_dir(f"s3://{BUCKET}/cache-test/nothing-here").iterdir()) == []


@pytest.mark.ray
@pytest.mark.slow  # ~75 s on 2 cores (Ray's start, one Ray Train fit, evaluation and scoring in tasks)
def test_ray_executor_trains_scores_and_selects_from_s3(s3, ray_local, tiny_archive, tmp_path):
    """Ray Train workers and the scoring read the shards from S3 (no local copy exists); the checkpoint
    goes to the state dir on S3 and the query is answered from it. Ray starts after the AWS
    environment is set (module fixtures in that order), so every Ray worker inherits it."""
    from raydal.al.loop import ActiveLearner
    from raydal.config import ALConfig
    from raydal.distributed.executor import RayExecutor

    shards = f"s3://{BUCKET}/ray-shards"
    prepare("ucmerced", tiny_archive, shards, size=32, seed=0, shard_size=32)
    state_dir = f"s3://{BUCKET}/ray-run"
    cfg = ALConfig(
        dataset="ucmerced",
        shards_dir=shards,
        state_dir=state_dir,
        strategy="mge+clustering",
        b=5,
        m=2,
        initial_labeled=10,
        iterations=1,
        seed=0,
        backbone="smallcnn",
        executor="ray",
        num_workers=1,
        cpus_per_worker=0.5,
        score_batch_size=16,
        train={"epochs": 1, "batch_size": 8, "lr": 0.05},
    )
    executor = RayExecutor(cfg)

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the fused run's evaluations and scores were not found under the uploaded checkpoint")

    executor._in_task = no_second_pass  # evaluation (or prediction) again, in a Ray task
    executor._score = no_second_pass  # scoring again, outside the training run
    learner = ActiveLearner(cfg, executor, log=lambda s: None)
    learner.step()  # init
    learner.step()  # train (+ evaluate, + score the pool) on Ray
    assert "ray-run/checkpoints/iter-0000/pool_scores.npz" in _keys(s3, "ray-run/")  # a resume finds them
    record = learner.state.history[-1]
    manifest = load_manifest(shards)
    assert record["checkpoint"].startswith(state_dir + "/checkpoints/")
    assert record["test"]["n_samples"] == manifest.splits["test"]["count"]
    learner.step()  # query
    state = learner.state
    assert state.phase == "train" and state.n_labeled == 15
    assert set(state.labeled) <= set(read_ids(manifest, "pool").tolist())
    assert "ray-run/state.json" in _keys(s3, "ray-run/")


def test_pool_scores_saved_beside_a_checkpoint_load_back_from_s3(s3, tmp_path):
    """The Ray executor's pool scores, uploaded beside the iteration's checkpoint, are found again
    from the checkpoint's URI (a resume between training and query scores nothing twice)."""
    import numpy as np

    from raydal.distributed.executor import _beside, load_pool_scores, save_pool_scores
    from raydal.query.candidates import PoolScores
    from raydal.utils import upload_dir

    scores = PoolScores(
        ids=np.array(["a", "b", "c"]),
        probs=np.arange(6, dtype=np.float32).reshape(3, 2),
        uncertainty_name="mge",
        uncertainty=np.array([0.1, 0.3, 0.2]),
        cand_ids=np.array(["b"]),
        cand_uncertainty=np.array([0.3]),
        cand_embeddings=np.ones((1, 4), np.float32),
    )
    folder = tmp_path / "iter-0000"
    (folder / "checkpoint").mkdir(parents=True)
    save_pool_scores(folder / "pool_scores.npz", "key-1", scores)
    uri = upload_dir(folder, f"s3://{BUCKET}/scores-run/checkpoints/iter-0000")
    checkpoint = f"{uri}/checkpoint"
    assert _beside(checkpoint, "pool_scores.npz") == f"{uri}/pool_scores.npz"
    loaded = load_pool_scores(_beside(checkpoint, "pool_scores.npz"), "key-1")
    assert loaded.ids.tolist() == ["a", "b", "c"] and loaded.cand_ids.tolist() == ["b"]
    assert np.array_equal(loaded.probs, scores.probs) and np.array_equal(loaded.cand_embeddings, scores.cand_embeddings)
    assert load_pool_scores(_beside(checkpoint, "pool_scores.npz"), "another-key") is None
    assert load_pool_scores(f"s3://{BUCKET}/scores-run/nothing/pool_scores.npz", "key-1") is None
