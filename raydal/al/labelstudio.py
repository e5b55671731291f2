"""Label Studio project files for a query batch: the labeling config and the tasks.

Images reach Label Studio in one of two ways (``IMAGE_MODES``):

- ``inline``: the thumbnail is inlined in the task as a ``data:image/png;base64``
  URI, so a stock Label Studio shows it with no server configuration;
- ``local-files``: the task holds ``/data/local-files/?d=<path>``, served by a
  Label Studio started with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true``
  and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` a parent of the export folder,
  with a Local Files storage on the thumbnails folder (docs/label-studio.md).

Parsing Label Studio's exports is in ``raydal.al.labelfiles``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from raydal.al.labelfiles import LS_FROM_NAME
from raydal.exceptions import ConfigError

IMAGE_MODES = ("inline", "local-files")
#: Label Studio's URL prefix for files under LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT.
LOCAL_FILES_PREFIX = "/data/local-files/?d="
#: Label Studio's default largest import (its DATA_UPLOAD_MAX_MEMORY_SIZE setting), bytes.
UPLOAD_LIMIT = 250 * 2**20
#: The task data key of the image, and of raydal's id.
IMAGE_KEY, ID_KEY = "image", "raydal_id"


def label_config(classes: Sequence[str]) -> str:
    """The labeling config: the image, the classes as a required multiple choice."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_KEY}" value="${IMAGE_KEY}" zoom="true"/>\n'
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


def task(sid: str, image: str, predicted: Sequence[str] | None, score: float | None, model_version: str) -> dict[str, Any]:
    """One task: ``data`` holds the image reference and raydal's id; the model's guess pre-filled.

    predicted: class names at or above the threshold (None: no prediction yet).
    """
    out: dict[str, Any] = {"data": {IMAGE_KEY: image, ID_KEY: sid}}
    if predicted is not None:
        result = [{"from_name": LS_FROM_NAME, "to_name": IMAGE_KEY, "type": "choices",
                   "value": {"choices": list(predicted)}}] if predicted else []
        out["predictions"] = [{"model_version": model_version, "score": score, "result": result}]
    return out
