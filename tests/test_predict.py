"""raydal predict: a trained run's model over shards or a folder of images, and its torch.export export."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raydal.al.executor import LocalExecutor
from raydal.al.loop import ActiveLearner
from raydal.cli import main
from raydal.config import ALConfig
from raydal.data.shards import load_manifest, prepare, read_split
from raydal.data.synth import synthesize
from raydal.data.synth._tiff import write_tif
from raydal.exceptions import ConfigError, StateError
from raydal.predict import predict

#: The run's --f1-threshold, not the default: predictions and the export must use it.
THRESHOLD = 0.35


def _strict_json(path):
    """``path``'s JSON, refusing NaN and infinities (which are not JSON)."""

    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A human-mode run on a folder archive that trained once on the archive's labels (float32 GeoTIFFs)."""
    base = tmp_path_factory.mktemp("predict")
    archive = synthesize("folder", base / "archive", n=30, size=16, seed=7)
    shards = prepare(
        "folder", archive, base / "shards", labels=archive / "labels.csv", classes=archive / "classes.txt"
    ).root
    cfg = ALConfig(
        dataset="folder",
        shards_dir=str(shards),
        state_dir=str(base / "state"),
        mode="human",
        strategy="random",
        b=3,
        initial_labeled=4,
        iterations=1,
        backbone="smallcnn",
        executor="local",
        train={"epochs": 1, "batch_size": 8, "lr": 0.05, "threshold": THRESHOLD},
    )
    state = ActiveLearner(cfg, LocalExecutor(cfg), log=lambda s: None).run()
    assert state.history  # trained on the archive's labeled pool images
    return {"archive": archive, "shards": shards, "state": base / "state", "config": cfg}


def _table(out):
    return pq.read_table(out / "predictions.parquet").to_pydict()


def test_predict_shards_and_folder_agree_and_files_are_consistent(run, tmp_path):
    classes = load_manifest(run["shards"]).classes
    a = predict(run["state"], run["shards"], tmp_path / "a", executor="local", threshold=0.4)
    b = predict(run["state"], run["archive"], tmp_path / "b", executor="local", threshold=0.4)
    ta, tb = _table(a.parent), _table(b.parent)
    assert sorted(ta["id"]) == sorted(tb["id"]) and len(ta["id"]) == 30
    assert list(ta) == ["id", "path", "split", *[f"p_{c}" for c in classes], "predicted"]
    pa = np.array([ta[f"p_{c}"] for c in classes]).T
    # the folder was prepared on the fly with the run's percentiles and size: same uint8, same probabilities
    by_id = {i: k for k, i in enumerate(tb["id"])}
    pb = np.array([tb[f"p_{c}"] for c in classes]).T[[by_id[i] for i in ta["id"]]]
    np.testing.assert_allclose(pa, pb, atol=1e-6)
    assert all(p.endswith(".tif") and (run["archive"] / p).exists() for p in ta["path"])
    # the folder's images carry their split in the run's archive, as the shards do
    assert set(ta["split"]) == {"pool", "val", "test"}
    assert dict(zip(tb["id"], tb["split"])) == dict(zip(ta["id"], ta["split"]))
    for row, predicted in zip(pa, ta["predicted"]):
        assert predicted == ";".join(c for c, p in zip(classes, row) if p >= 0.4)
    with open(a.parent / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ta["id"] and [r["predicted"] for r in rows] == ta["predicted"]
    np.testing.assert_allclose([[float(r[f"p_{c}"]) for c in classes] for r in rows], pa, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_exported_model_gives_the_same_probabilities(run, tmp_path):
    import torch

    out = predict(run["state"], run["shards"], tmp_path / "p", executor="local").parent
    pre = _strict_json(out / "model" / "preprocessing.json")
    assert _strict_json(out / "model" / "model.json")["model"]["num_classes"] == len(pre["classes"])
    files = {p.name for p in (out / "model").iterdir()}
    assert files == set(pre["files"])  # every file of the export says what it is for
    m = load_manifest(run["shards"])
    assert pre["classes"] == m.classes and pre["image_size"] == 16 and pre["scaling"] == m.scaling
    assert pre["scaling"]["method"] == "percentile" and len(pre["scaling"]["lo"]) == 4
    exported = torch.export.load(str(out / "model" / pre["model_file"])).module()  # torch alone, no raydal
    table = _table(out)
    images = np.concatenate([read_split(m, s)["image"] for s in ("pool", "val", "test")])
    ids = np.concatenate([read_split(m, s)["id"] for s in ("pool", "val", "test")])
    with torch.no_grad():
        probs = exported(torch.from_numpy(images)).numpy()
    by_id = {i: k for k, i in enumerate(table["id"])}
    expected = np.array([table[f"p_{c}"] for c in m.classes]).T[[by_id[i] for i in ids]]
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    scripted = torch.jit.load(str(out / "model" / pre["torchscript_file"]))  # TorchScript, for libtorch
    with torch.no_grad():
        np.testing.assert_allclose(scripted(torch.from_numpy(images)).numpy(), expected, atol=1e-5)
    # the export folder is itself a MODEL for raydal predict, and so is a checkpoint of the run
    again = _table(predict(out / "model", run["shards"], tmp_path / "q", executor="local", export=False).parent)
    from raydal.al.state import StateStore

    checkpoint = StateStore(str(run["state"])).load().history[-1]["checkpoint"]  # STATE/checkpoints/iter-0000/...
    ckpt = _table(predict(checkpoint, run["shards"], tmp_path / "r", executor="local", export=False).parent)
    assert again == table == ckpt
    # the run's threshold is the default of predict and of the export, as of its recorded F1
    assert pre["threshold"] == THRESHOLD
    probs = np.array([table[f"p_{c}"] for c in m.classes]).T
    assert table["predicted"] == [";".join(c for c, p in zip(m.classes, row) if p >= THRESHOLD) for row in probs]
    assert (probs >= THRESHOLD).sum() != (probs >= 0.5).sum()  # the threshold matters on this model
    for written in __import__("pathlib").Path(checkpoint).parent.rglob("*.json"):  # the run's checkpoints too
        _strict_json(written)


def test_no_path_escapes_out_dir(run, tmp_path):
    names = ["a..b", "a b", "x;y,z", "=cmd()", "ümlaut", "new\nline", 'quote"d', "-rf", "back\\slash", "%2e%2e"]
    folder = tmp_path / "input"
    for k, name in enumerate(names):
        write_tif(folder / f"{name}.tif", np.full((16, 16, 4), 0.05 * (k + 1), np.float32))
    write_tif(folder / "deep" / "er" / "nested.tif", np.full((16, 16, 4), 0.1, np.float32))
    write_tif(folder / ".hidden" / "skipped.tif", np.full((16, 16, 4), 0.1, np.float32))
    before = sorted(p for p in tmp_path.rglob("*"))
    out = tmp_path / "out"
    predict(run["state"], folder, out, executor="local")
    after = sorted(p for p in tmp_path.rglob("*") if out not in p.parents and p != out)
    assert after == before  # nothing written outside OUT_DIR
    table = _table(out)
    assert sorted(table["id"]) == sorted([*names, "nested"])  # hidden folders are skipped
    assert set(table["split"]) == {"new"}  # images outside the run's archive
    for written in out.rglob("*.json"):  # model/, input-shards/: strict JSON everywhere
        _strict_json(written)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    fixed = {
        "predictions.parquet",
        "predictions.csv",
        "model/model.pt2",
        "model/model.torchscript.pt",
        "model/preprocessing.json",
        "model/model.pt",
        "model/model.json",
        "input-shards/manifest.json",
        "input-shards/ids-pool.parquet",
    }
    assert fixed <= set(files)
    assert all(f in fixed or f.startswith("input-shards/pool/part-") for f in files), files


def test_bad_model_and_input(run, tmp_path):
    with pytest.raises(Exception, match="neither a run's state dir"):
        predict(tmp_path, run["shards"], tmp_path / "o", executor="local")
    with pytest.raises(ConfigError, match="neither prepared shards"):
        predict(run["state"], tmp_path / "nope", tmp_path / "o", executor="local")
    other = prepare("folder", run["archive"], tmp_path / "s8", size=8, labels=run["archive"] / "labels.csv").root
    with pytest.raises(ConfigError, match="do not match the model"):
        predict(run["state"], other, tmp_path / "o", executor="local")
    cfg = ALConfig(**{**run["config"].to_dict(), "state_dir": str(tmp_path / "fresh"), "initial_labeled": 40})
    (tmp_path / "fresh").mkdir()
    from raydal.al.state import ALState, StateStore

    StateStore(cfg.state_dir).save(ALState(config=cfg.to_dict(), fingerprint=cfg.fingerprint()))
    with pytest.raises(StateError, match="no trained model yet"):
        predict(tmp_path / "fresh", run["shards"], tmp_path / "o", executor="local")


def test_cli_predict(run, tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                str(run["state"]),
                str(run["shards"]),
                str(tmp_path / "o"),
                "--executor",
                "local",
                "--threshold",
                "0.3",
                "--no-export",
            ]
        )
        == 0
    )
    assert "30 images" in capsys.readouterr().out
    assert (tmp_path / "o" / "predictions.csv").exists() and not (tmp_path / "o" / "model").exists()


def test_ray_data_path_gives_the_same_predictions(run, tmp_path, ray_local, capfd):
    local = _table(predict(run["state"], run["shards"], tmp_path / "l", executor="local", export=False).parent)
    capfd.readouterr()
    on_ray = _table(
        predict(run["state"], run["shards"], tmp_path / "r", executor="ray", batch_size=8, export=False).parent
    )
    logged = capfd.readouterr()
    # no error-level line from Ray (e.g. ray-project/ray#53727's "constructor arguments in the object store")
    errors = [ln for ln in (logged.out + logged.err).splitlines() if " E " in ln[:40] or "ERROR" in ln]
    assert not errors, errors
    assert on_ray["id"] == local["id"] and on_ray["predicted"] == local["predicted"]
    for key in local:
        if key.startswith("p_"):
            np.testing.assert_allclose(on_ray[key], local[key], atol=1e-6)
