"""Predictions out of a trained run, and the model exported for use outside raydal (no Ray here).

``predict(model, input, out_dir)`` writes::

    <out_dir>/predictions.parquet   id, path, split, p_<class> (one sigmoid probability per
    <out_dir>/predictions.csv       class), predicted (class names >= threshold, joined by ';')
    <out_dir>/model/model.pt2       for Python: a torch.export program, uint8 [N, S, S, B] -> probabilities [N, C]
    <out_dir>/model/model.torchscript.pt   for C++ (libtorch) and PyTorch without torch.export: the same, TorchScript
    <out_dir>/model/model.pt, model.json   for raydal: the checkpoint (``raydal predict`` MODEL, a run's init)
    <out_dir>/model/preprocessing.json     how raw pixels become that uint8 input, the classes, the threshold
    <out_dir>/input-shards/         only for a folder of images: the images prepared on the fly

``split`` is each image's split in the run's archive (pool, val, test), ``new`` for an
image outside it, ``unknown`` when MODEL is a checkpoint without its run. Every JSON file
is strict JSON (no NaN).

``model`` is a run's state dir (its latest model) or a checkpoint folder (one
inside a state dir, or an exported ``model/`` folder with its preprocessing.json).
``input`` is a prepared shard set (every split is predicted) or a folder of
image files, prepared with the run's own uint8 conversion and image size.
``model`` and shard ``input`` may be storage URIs (``s3://...``); ``out_dir`` is a
local folder.
Every file name written is fixed: ids and file names only ever appear as data.
``raydal.distributed.predict`` runs the forward passes on Ray Data.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raydal.config import ALConfig
from raydal.constants import MANIFEST_NAME, META_FILE, MODEL_FILE, SPLITS
from raydal.exceptions import ConfigError, ModelError, StateError
from raydal.settings import Interval, check_value
from raydal.utils import file_exists, is_uri, join_location, read_bytes

PREDICTIONS = "predictions"
EXPORT_DIR = "model"
EXPORT_FILE = "model.pt2"
#: The same model as TorchScript (``torch.jit.load``), for libtorch and older PyTorch.
TORCHSCRIPT_FILE = "model.torchscript.pt"
PREPROCESSING_FILE = "preprocessing.json"
#: What each file of an exported model folder is for (written into its preprocessing.json).
MODEL_FILES = {
    EXPORT_FILE: "Python with torch alone: torch.export.load(path).module()(images)",
    TORCHSCRIPT_FILE: "C++ (libtorch) or PyTorch without torch.export: torch.jit.load(path)(images)",
    MODEL_FILE: "raydal: the checkpoint's weights (with model.json), so this folder is a MODEL for raydal predict",
    META_FILE: "raydal: the checkpoint's architecture (ModelSpec) and training facts",
    PREPROCESSING_FILE: "how raw pixels become the uint8 input, the classes and the threshold",
}
INPUT_SHARDS = "input-shards"
#: The ``split`` of an image outside the run's archive, and of any image when the run is not known.
NEW_SPLIT = "new"
UNKNOWN_SPLIT = "unknown"
EXECUTORS = ("auto", "ray", "local")
PREPROCESSING_FORMAT = 1


@dataclass
class ModelSource:
    """A trained model and what its inputs must look like.

    checkpoint: the checkpoint folder (``model.pt`` + ``model.json``).
    preprocessing: the ``preprocessing.json`` content (classes, bands, image size,
    uint8 conversion), or None when nothing says it (then the input must be shards).
    """

    checkpoint: str
    preprocessing: dict[str, Any] | None
    #: The run's shard set (where each image's split is read), or None when the run is unknown.
    shards_dir: str | None = None


def preprocessing_of(manifest, threshold: float | None = None) -> dict[str, Any]:
    """What a model trained on ``manifest``'s shards expects, as written to preprocessing.json.

    threshold: the run's ``--f1-threshold`` (None: its default)."""
    from raydal.training.metrics import default_threshold

    return {
        "format": PREPROCESSING_FORMAT,
        "dataset": manifest.dataset,
        "classes": list(manifest.classes),
        "band_names": list(manifest.band_names),
        "bands": manifest.bands,
        "image_size": manifest.image_size,
        "scaling": manifest.scaling,
        "reader_settings": manifest.reader_settings,
        "threshold": default_threshold() if threshold is None else float(threshold),
        "steps": [
            "read the image as [H, W, B] in the band order band_names",
            "convert to uint8 by 'scaling' (method none: as is; otherwise per band b "
            "uint8 = round(clip((x - lo[b]) / (hi[b] - lo[b]), 0, 1) * 255); linear_clip: its formula)",
            "resize each band to image_size x image_size (bilinear, antialiased when shrinking)",
            "stack to uint8 [N, image_size, image_size, B] and call the exported model "
            "(torch.export.load('model.pt2').module())",
            "the model returns sigmoid probabilities [N, C] in the order of 'classes'; "
            "a class is predicted when its probability >= threshold",
        ],
    }


def resolve_model(model: str | Path) -> ModelSource:
    """The checkpoint and preprocessing of ``model``: a state dir, or a checkpoint folder
    (local paths or storage URIs)."""
    from raydal.al.state import STATE_FILE

    location = str(model).rstrip("/") if is_uri(model) else Path(model).expanduser()
    if file_exists(join_location(location, STATE_FILE)):
        state = _load_state(location)
        if not state.history:
            raise StateError(
                f"The run in {location} has no trained model yet (phase {state.phase!r}). Fix: run it "
                "until it has trained once (label the initial batch in human mode), then predict."
            )
        return ModelSource(state.history[-1]["checkpoint"], _run_preprocessing(state), state.config["shards_dir"])
    if file_exists(join_location(location, MODEL_FILE)):
        if file_exists(join_location(location, PREPROCESSING_FILE)):
            return ModelSource(str(location), json.loads(read_bytes(join_location(location, PREPROCESSING_FILE))))
        for parent in _parents(location):  # STATE/checkpoints/iter-NNNN
            if file_exists(join_location(parent, STATE_FILE)):
                state = _load_state(parent)
                return ModelSource(str(location), _run_preprocessing(state), state.config["shards_dir"])
        return ModelSource(str(location), None)
    raise ModelError(
        f"{location} is neither a run's state dir (no {STATE_FILE}) nor a checkpoint folder (no "
        f"{MODEL_FILE}). Fix: pass the --state-dir of a run, or one of its checkpoints/iter-NNNN."
    )


def _load_state(location: Path | str):
    from raydal.al.state import StateStore

    return StateStore(str(location)).load()


def run_threshold(run_config: dict[str, Any]) -> float:
    """The probability threshold of a run (its ``--f1-threshold``) from its saved config: the one its
    recorded F1 used, and the default of its predictions and exports."""
    from raydal.config import ALConfig

    return ALConfig.from_dict(run_config).train_config().threshold


def _run_preprocessing(state) -> dict[str, Any]:
    from raydal.data.shards import load_manifest

    return preprocessing_of(load_manifest(state.config["shards_dir"]), run_threshold(state.config))


def _parents(location: Path | str) -> list[Path | str]:
    """The folders above ``location``, nearest first (for a URI: up to its bucket)."""
    if isinstance(location, Path):
        return list(location.resolve().parents)
    scheme, _, rest = location.partition("://")
    parts = rest.split("/")
    return [f"{scheme}://{'/'.join(parts[:k])}" for k in range(len(parts) - 1, 0, -1)]


def prepare_input(source: ModelSource, input: str | Path, out_dir: Path, skip_bad: bool = False):
    """The shard ``Manifest`` to predict: ``input`` itself when it is a shard set (a local folder or a
    storage URI), else the image folder ``input`` prepared into ``out_dir/input-shards`` with the
    model's conversion and size."""
    from raydal.data.shards import load_manifest, prepare

    input = str(input).rstrip("/") if is_uri(input) else Path(input).expanduser()
    if file_exists(join_location(input, MANIFEST_NAME)):
        manifest = load_manifest(input)
        pre = source.preprocessing
        if pre is not None and (
            manifest.bands != pre["bands"]
            or manifest.image_size != pre["image_size"]
            or list(manifest.classes) != list(pre["classes"])
        ):
            raise ConfigError(
                f"The shards at {input} ({manifest.bands} bands, {manifest.image_size} px, classes "
                f"{manifest.classes}) do not match the model ({pre['bands']} bands, {pre['image_size']} px, "
                f"classes {pre['classes']}). Fix: prepare the images with the run's settings, or pass the "
                "image folder itself as INPUT."
            )
        return manifest
    if isinstance(input, str) or not input.is_dir():
        raise ConfigError(
            f"INPUT {input} is neither prepared shards (no {MANIFEST_NAME}) nor a local folder of images."
        )
    pre = source.preprocessing
    if pre is None:
        raise ConfigError(
            f"The checkpoint {source.checkpoint} does not say how its images were prepared. Fix: "
            "pass the run's state dir as MODEL, or prepared shards as INPUT."
        )
    return prepare(
        "folder",
        input,
        out_dir / INPUT_SHARDS,
        size=pre["image_size"],
        overwrite=True,
        skip_bad=skip_bad,
        **folder_settings(pre),
    )


def folder_settings(pre: dict[str, Any]) -> dict[str, Any]:
    """Folder-reader settings that read new images the way the run's archive was read."""
    scaling = pre["scaling"]
    settings: dict[str, Any] = {
        "classes": list(pre["classes"]),
        "band_names": list(pre["band_names"]),
        "nan_fill": scaling.get("nan_fill"),
    }
    if pre.get("dataset") == "folder":
        settings["id_from"] = pre["reader_settings"].get("id_from", "stem")
    method = scaling.get("method", "none")
    if method == "none":
        settings["scaling"] = "none"
    elif "lo" in scaling:
        settings.update(scaling="range", value_range=[list(p) for p in zip(scaling["lo"], scaling["hi"])])
    elif "clip" in scaling:  # BigEarthNet's reflectance clip, applied to every band
        settings.update(scaling="range", value_range=list(scaling["clip"]))
    else:
        raise ConfigError(
            f"The run's uint8 conversion {method!r} cannot be applied to a folder of images. "
            "Fix: prepare the images with `raydal prepare` and pass the shards as INPUT."
        )
    return settings


def predict_arrays_local(
    checkpoint: str, manifest, batch_size: int = ALConfig.score_batch_size
) -> tuple[list[str], list[str], np.ndarray]:
    """Forward passes in this process over every split: ``(ids [N], paths [N], probs float32 [N, C])``.

    Full float32 precision on every device (no bf16 autocast on CUDA), so the
    numbers equal the exported model's.
    """
    from raydal.data.shards import decode_batch
    from raydal.models import load_checkpoint
    from raydal.query.scoring import score_batch
    from raydal.utils import default_device, read_parquet

    device = default_device()
    net = load_checkpoint(checkpoint, device=device)
    ids: list[str] = []
    paths: list[str] = []
    probs: list[np.ndarray] = []
    for split in manifest.splits:
        for file in manifest.split_files(split):
            table = read_parquet(file, columns=["id", "image", "labels", "path"])
            for start in range(0, table.num_rows, batch_size):
                chunk = table.slice(start, batch_size)
                batch = decode_batch(chunk, manifest)
                probs.append(score_batch(net, batch["image"], device, amp="off")["probs"])
                ids += [str(i) for i in batch["id"]]
                paths += chunk["path"].to_pylist()
    width = len(manifest.classes)
    return ids, paths, np.concatenate(probs) if probs else np.zeros((0, width), np.float32)


def predict(
    model: str | Path,
    input: str | Path,
    out_dir: str | Path,
    executor: str = "auto",
    threshold: float | None = None,
    batch_size: int = ALConfig.score_batch_size,
    concurrency: int = 1,
    export: bool = True,
    skip_bad: bool = False,
) -> Path:
    """Predict every image of ``input`` with ``model``; write predictions (and the export) into ``out_dir``.

    executor: ``"ray"`` (Ray Data tasks), ``"local"`` (this process), ``"auto"``
    (Ray when it is installed). threshold: a class is predicted when its
    probability is >= threshold (default: the run's ``--f1-threshold``, as
    its recorded F1; a checkpoint without its run: that setting's default). concurrency: Ray Data
    tasks at a time. export: also write the exported model (``model/model.pt2``) and preprocessing.json.
    Returns the path of predictions.parquet.
    """
    check_value(executor, "executor", "predict", EXECUTORS)
    for name, value in (("batch_size", batch_size), ("concurrency", concurrency)):
        check_value(value, name, "predict", Interval(int, 1))
    if is_uri(out_dir):
        raise ConfigError(
            f"The 'out_dir' parameter of predict must be a local folder. Got {out_dir!r} instead. "
            "Fix: predict into a local folder, then copy it (e.g. `aws s3 cp --recursive`)."
        )
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    source = resolve_model(model)
    manifest = prepare_input(source, input, out, skip_bad=skip_bad)
    pre = source.preprocessing or preprocessing_of(manifest)
    if threshold is None:
        threshold = pre["threshold"]
    check_value(threshold, "threshold", "predict", Interval(float, 0, 1, "neither"))
    if _resolve_executor(executor) == "ray":
        from raydal.distributed.predict import predict_arrays_ray

        ids, paths, probs = predict_arrays_ray(
            source.checkpoint, manifest, batch_size=batch_size, concurrency=concurrency
        )
    else:
        ids, paths, probs = predict_arrays_local(source.checkpoint, manifest, batch_size)
    result = write_predictions(
        out,
        manifest,
        ids,
        paths,
        probs,
        list(pre["classes"]),
        threshold,
        splits_of(source, manifest, from_folder=str(manifest.root) == str(out / INPUT_SHARDS)),
    )
    if export:
        export_model(source.checkpoint, {**pre, "threshold": threshold}, out / EXPORT_DIR)
    return result


def _resolve_executor(executor: str) -> str:
    if executor != "auto":
        return executor
    try:
        import ray  # noqa: F401
    except ImportError:
        return "local"
    return "ray"


def splits_of(source: ModelSource, manifest, from_folder: bool) -> dict[str, str]:
    """id -> split of each image of ``manifest``: the split the input shard set gives it or, for a
    folder of images prepared on the fly (``from_folder``: all ``pool`` there), its split in the
    run's archive (``new`` outside it, ``unknown`` without the run)."""
    from raydal.data.shards import load_manifest, read_ids

    own = {str(i): split for split in manifest.splits for i in read_ids(manifest, split)}
    if not from_folder:
        return own
    if source.shards_dir is None:
        return dict.fromkeys(own, UNKNOWN_SPLIT)
    run = load_manifest(source.shards_dir)
    known = {str(i): split for split in run.splits for i in read_ids(run, split)}
    return {i: known.get(i, NEW_SPLIT) for i in own}


def write_predictions(
    out: Path,
    manifest,
    ids: list[str],
    paths: list[str],
    probs: np.ndarray,
    classes: list[str],
    threshold: float,
    split_of: dict[str, str] | None = None,
) -> Path:
    """predictions.parquet and predictions.csv, rows ordered by split (pool, val, test, new, unknown)
    then id. split_of: id -> split (default: the splits of ``manifest``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydal.data.shards import read_ids
    from raydal.utils import atomic_write_bytes

    if split_of is None:
        split_of = {str(i): split for split in manifest.splits for i in read_ids(manifest, split)}
    rank = {s: k for k, s in enumerate((*SPLITS, NEW_SPLIT, UNKNOWN_SPLIT))}
    order = sorted(range(len(ids)), key=lambda k: (rank.get(split_of[ids[k]], len(rank)), ids[k]))
    probs = np.asarray(probs, dtype=np.float32)[order] if order else np.zeros((0, len(classes)), np.float32)
    ids = [ids[k] for k in order]
    columns: dict[str, Any] = {
        "id": ids,
        "path": [paths[k] for k in order],
        "split": [split_of[i] for i in ids],
    }
    for c, name in enumerate(classes):
        columns[f"p_{name}"] = probs[:, c]
    columns["predicted"] = [";".join(classes[c] for c in np.flatnonzero(row >= threshold)) for row in probs]
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(out / f"{PREDICTIONS}.parquet", sink.getvalue().to_pybytes())
    text = _csv_text(table)
    atomic_write_bytes(out / f"{PREDICTIONS}.csv", text.encode())
    return out / f"{PREDICTIONS}.parquet"


def _csv_text(table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(table.column_names)
    cols = [table[c].to_pylist() for c in table.column_names]
    for row in zip(*cols):
        writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in row])
    return buf.getvalue()


# -- export ------------------------------------------------------------------------


def export_model(checkpoint: str, preprocessing: dict[str, Any], out_dir: str | Path) -> Path:
    """Write the model in the formats of :data:`MODEL_FILES` and ``preprocessing.json`` into ``out_dir``.

    ``model.pt2`` is a ``torch.export`` program (TorchScript's successor; no new
    dependency): ``torch.export.load(path).module()(images)`` runs it with torch
    alone, no raydal needed. Each maps uint8 [N, S, S, B] to probabilities [N, C], any N.
    """
    import shutil

    import torch

    from raydal.models import load_checkpoint
    from raydal.utils import atomic_write_bytes, atomic_write_strict_json, local_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = load_checkpoint(checkpoint, device="cpu")
    size, bands = preprocessing["image_size"], preprocessing["bands"]
    example = torch.zeros((2, size, size, bands), dtype=torch.uint8)
    wrapped = _probabilities_module()(net).eval()
    program = torch.export.export(wrapped, (example,), dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}})
    buf = io.BytesIO()
    torch.export.save(program, buf)
    atomic_write_bytes(out / EXPORT_FILE, buf.getvalue())
    atomic_write_bytes(out / TORCHSCRIPT_FILE, _torchscript_bytes(wrapped, example))
    src = local_dir(checkpoint)
    shutil.copyfile(src / MODEL_FILE, out / MODEL_FILE)
    # strict JSON even from a checkpoint written before raydal wrote NaN metrics as null
    atomic_write_strict_json(out / META_FILE, json.loads((src / META_FILE).read_text()))
    atomic_write_strict_json(
        out / PREPROCESSING_FILE,
        {
            **preprocessing,
            "model_file": EXPORT_FILE,
            "torchscript_file": TORCHSCRIPT_FILE,
            "files": MODEL_FILES,
            "input": f"uint8 [N, {size}, {size}, {bands}]",
            "output": "float32 [N, C] sigmoid probabilities",
        },
    )
    return out


def _torchscript_bytes(module, example) -> bytes:
    """``module`` traced to TorchScript, for runtimes that load TorchScript (libtorch in C++, older
    PyTorch). torch 2.14 marks ``torch.jit`` deprecated in favour of ``torch.export``; the
    warnings are silenced here because the TorchScript file is written on purpose."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=Warning)
        traced = torch.jit.trace(module, (example,), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    return buf.getvalue()


def _probabilities_module():
    """The wrapper class, made on first use so that importing this module imports no torch."""
    import torch

    class Probabilities(torch.nn.Module):
        """uint8 [N, H, W, B] -> sigmoid probabilities [N, C] (``raydal.models.preprocess`` inside)."""

        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.permute(0, 3, 1, 2).float().div(255.0).contiguous()
            return torch.sigmoid(self.net(x).logits.float())

    return Probabilities
