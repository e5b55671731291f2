"""Label Studio project files for a query batch: the labeling config and the tasks.

Images reach Label Studio in one of two ways (``IMAGE_MODES``):

- ``inline``: the thumbnail is inlined in the task as a ``data:image/png;base64``
  URI, so a stock Label Studio shows it with no server configuration;
- ``local-files``: the task holds ``/data/local-files/?d=<path>``, served by a
  Label Studio started with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``
  and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` a parent of the export folder,
  with a Local Files storage on the thumbnails folder (docs/label-studio.md).

What the model thinks reaches the annotators in one of three ways
(``PREDICTION_MODES``, ``raydal export --predictions``):

- ``none`` (default): nothing; the annotator sees only the image. AL asks for
  exactly the images the model is least sure of, so its guess is the least
  reliable there, and Label Studio shows predictions as a selected answer: one
  click on Submit would record the guess as a human label.
- ``hint``: the class probabilities as text beside the image (task data
  ``raydal_hint``, a ``<Text>`` in the labeling config); nothing is selected.
- ``preselect``: Label Studio predictions, shown as the selected answer.

Parsing Label Studio's exports is in ``raydal.al.labelfiles``; the live link to
a Label Studio server in ``raydal.al.lssync``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from raydal.al.labelfiles import LS_FROM_NAME
from raydal.exceptions import ConfigError

IMAGE_MODES = ("inline", "local-files")
PREDICTION_MODES = ("none", "hint", "preselect")
#: Label Studio's URL prefix for files under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT.
LOCAL_FILES_PREFIX = "/data/local-files/?d="
#: Label Studio's default largest import (its DATA_UPLOAD_MAX_MEMORY_SIZE setting), bytes.
UPLOAD_LIMIT = 250 * 2**20
#: The task data key of the image, and of raydal's id.
IMAGE_KEY, ID_KEY = "image", "raydal_id"
#: The task data key of the model's probabilities as text (``predictions="hint"``).
HINT_KEY = "raydal_hint"


def label_config(classes: Sequence[str], predictions: str = "none") -> str:
    """The labeling config: the image, the classes as a required multiple choice;
    with ``predictions="hint"`` also the model's probabilities as text (``HINT_KEY``)."""
    _check_mode(predictions)
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    hint = (
        (
            f'  <Header value="Model\'s probabilities (a hint, not an answer)" size="6"/>\n'
            f'  <Text name="{HINT_KEY}" value="${HINT_KEY}"/>\n'
        )
        if predictions == "hint"
        else ""
    )
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_KEY}" value="${IMAGE_KEY}" zoom="true"/>\n'
        f"{hint}"
        f'  <Choices name="{LS_FROM_NAME}" toName="{IMAGE_KEY}" choice="multiple" showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def local_files_url(file: Path, document_root: Path) -> str:
    """``/data/local-files/?d=...`` for ``file``, which must lie under ``document_root``."""
    file, root = Path(file).resolve(), Path(document_root).resolve()
    try:
        rel = file.relative_to(root)
    except ValueError:
        raise ConfigError(
            f"The 'document_root' parameter must be a parent folder of the export folder for "
            f"images='local-files'. Got {str(root)!r}, which does not hold {file}. Fix: export under "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (raydal export --out), or pass that folder as --document-root."
        ) from None
    return LOCAL_FILES_PREFIX + quote(rel.as_posix(), safe="/")


def task(
    sid: str,
    image: str,
    classes: Sequence[str],
    probs: Sequence[float] | None,
    threshold: float,
    model_version: str,
    predictions: str = "none",
) -> dict[str, Any]:
    """One task: ``data`` holds the image reference and raydal's id, and what ``predictions`` shows.

    probs: [C] sigmoid probabilities of the model that made the query (None: no
    model yet, the initial batch); a class at or above ``threshold`` is predicted.
    """
    _check_mode(predictions)
    out: dict[str, Any] = {"data": {IMAGE_KEY: image, ID_KEY: sid}}
    if predictions == "hint":
        out["data"][HINT_KEY] = hint_text(classes, probs)
    elif predictions == "preselect" and probs is not None:
        predicted = [c for c, p in zip(classes, probs) if p >= threshold]
        result = (
            [{"from_name": LS_FROM_NAME, "to_name": IMAGE_KEY, "type": "choices", "value": {"choices": predicted}}]
            if predicted
            else []
        )
        out["predictions"] = [{"model_version": model_version, "score": confidence(probs), "result": result}]
    return out


def hint_text(classes: Sequence[str], probs: Sequence[float] | None) -> str:
    """``"trees 0.91, grass 0.55, ..."``: every class, most probable first (the hint's text)."""
    if probs is None:
        return "no model yet (first batch)"
    ranked = sorted(zip(classes, probs), key=lambda cp: -cp[1])
    return ", ".join(f"{c} {p:.2f}" for c, p in ranked)


def confidence(probs: Sequence[float]) -> float:
    """Mean over classes of max(p, 1 - p): 1 when the model is sure of every class, 0.5 when of none."""
    return float(sum(max(p, 1 - p) for p in probs) / len(probs))


def most_uncertain_first(ids: Sequence[str], probs: Mapping[str, Sequence[float]]) -> list[str]:
    """``ids`` ordered by ``confidence`` ascending (ids without probabilities keep their order, last)."""
    order = {sid: n for n, sid in enumerate(ids)}
    return sorted(ids, key=lambda sid: (confidence(probs[sid]) if probs.get(sid) else 2.0, order[sid]))


def _check_mode(predictions: str) -> None:
    if predictions not in PREDICTION_MODES:
        raise ConfigError(
            f"The 'predictions' parameter must be one of {', '.join(PREDICTION_MODES)}. Got {predictions!r} instead."
        )
