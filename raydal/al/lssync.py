"""A live link between a human-mode run and a Label Studio project (``raydal label-studio``).

One ``sync`` does, in this order:

1. **project**: the project recorded in the state dir's ``label_studio.json``,
   else the one titled ``title``, else a new one; its labeling config is
   raydal's (``labelstudio.label_config``) for the chosen ``predictions`` mode.
2. **pull**: the tasks of the project whose annotations raydal has not seen
   (an annotation is known by its id and ``updated_at``, so an edited answer
   counts as new) are written as a Label Studio JSON export to
   ``label-studio/pull-<digest>.json`` in the state dir and imported with
   ``raydal.al.humanloop.import_labels``: the same validation, corrections and
   disagreement rules as ``raydal import-labels``. A pull file already
   imported is a no-op, so a sync cut short between import and record
   imports nothing twice.
3. **push**: the pending batch's images not in the project yet (by their
   ``raydal_id``, asked of Label Studio, not only of the record) are exported
   (``export_batch``) and imported, most uncertain first.

``follow`` repeats ``sync`` and, when a batch is complete, trains and queries
through the run path of ``raydal run --mode human`` (``train_and_query``).

The client is Label Studio's own SDK (``label-studio-sdk``, the optional extra
``raydal[labelstudio]``); only ``connect`` imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from raydal.al import labelstudio
from raydal.al.state import StateStore
from raydal.exceptions import ConfigError, LabelImportError, RaydalError, StateError

#: Label Studio's address and access token (the names Label Studio's own SDK reads).
ENV_URL, ENV_API_KEY = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"
#: The link's record in the state dir, and the folder of pulled annotations.
RECORD_FILE, PULL_DIR = "label_studio.json", "label-studio"
INSTALL_HINT = "pip install 'raydal[labelstudio]' (or: pip install label-studio-sdk)"
#: Tasks asked for per request.
PAGE_SIZE = 100


class LabelStudioError(RaydalError):
    """Label Studio answered with an error, or could not be reached."""


def connect(url: str | None = None, api_key: str | None = None, timeout_s: float = 60.0) -> Any:
    """A ``label_studio_sdk.LabelStudio`` client for ``url`` (default $LABEL_STUDIO_URL) and
    ``api_key`` (default $LABEL_STUDIO_API_KEY)."""
    url = url or os.environ.get(ENV_URL)
    api_key = api_key or os.environ.get(ENV_API_KEY)
    if not url:
        raise ConfigError(f"The Label Studio address is not set. Fix: pass --url http://HOST:8080, or set {ENV_URL}.")
    if not api_key:
        raise ConfigError(
            f"The Label Studio access token is not set. Fix: pass --api-key, or set {ENV_API_KEY} (Label Studio: "
            "Account & Settings -> Personal Access Token; a legacy token needs legacy tokens enabled in the "
            "organization's settings)."
        )
    try:
        from label_studio_sdk import LabelStudio
    except ImportError:
        raise ConfigError(f"raydal label-studio needs Label Studio's client library: {INSTALL_HINT}") from None
    return LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=timeout_s)


def default_title(state_dir: str) -> str:
    """``raydal <state dir name>``: the project title when none is given."""
    return f"raydal {Path(str(state_dir).rstrip('/')).name}"


class Link:
    """One state dir linked to one Label Studio project through ``client``.

    title: the project's title (default ``default_title``); export:
    ``ExportOptions`` fields (``predictions``: what annotators see of the
    model's guess, ``images``, ``max_side``);
    import_options: ``import_labels`` keywords (``allow_changes``,
    ``on_disagreement``); annotator: recorded as who labeled.
    """

    def __init__(
        self,
        state_dir: str,
        client: Any,
        title: str | None = None,
        export: Mapping[str, Any] | None = None,
        import_options: Mapping[str, Any] | None = None,
        annotator: str = "label-studio",
        log: Callable[[str], None] | None = None,
    ):
        from raydal.al.humanloop import ExportOptions

        self.state_dir = str(state_dir)
        self.client = client
        self.title = title or default_title(self.state_dir)
        self.export = ExportOptions(**dict(export or {}))
        self.import_options = dict(import_options or {})
        self.annotator = annotator
        self.log = log or (lambda _: None)
        self.store = StateStore(self.state_dir)
        if not self.store.has_state():
            raise StateError(
                f"{self.state_dir} holds no raydal state: start the run first "
                "(raydal run DATASET --mode human --state-dir ...)."
            )

    # -- one round -----------------------------------------------------------
    def sync(self) -> dict[str, Any]:
        """Project, pull, push (module docstring). Returns ``{"project", "imported", "pushed",
        "phase", "pending"}``: ``imported`` is ``import_labels``' result or None."""
        record = self._record()
        project = self._project(record)
        tasks = self._tasks(project)  # one listing a round: with inline thumbnails, tasks are large
        imported = self._pull(tasks, record)
        pushed = self._push(project, tasks, record)
        state = self.store.load()
        return {
            "project": project,
            "imported": imported,
            "pushed": pushed,
            "phase": state.phase,
            "pending": len(state.pending["ids"]) if state.pending else 0,
        }

    def _record(self) -> dict[str, Any]:
        """What was linked: the server, its project, the tasks pushed, the annotations seen. A record
        of another server is started afresh (its project ids mean nothing here)."""
        url = str(self.client._client_wrapper.get_base_url())
        record = json.loads(self.store.read_bytes(RECORD_FILE)) if self.store.exists(RECORD_FILE) else {}
        if record.get("url") != url:
            if record:
                self.log(f"{RECORD_FILE} links {record.get('url')}; linking {url} afresh")
            record = {"url": url, "project": None, "pushed": {}, "seen": []}
        return record

    def _save(self, record: dict[str, Any]) -> None:
        self.store.write_bytes(json.dumps(record, indent=1, sort_keys=True).encode("utf-8"), RECORD_FILE)

    def _project(self, record: dict[str, Any]) -> int:
        from raydal.data.shards import load_manifest

        classes = list(load_manifest(self.store.load().config["shards_dir"]).classes)
        config = labelstudio.label_config(classes, self.export.predictions)
        if record["project"] is not None:
            project = _call(f"reading project {record['project']}", self.client.projects.get, id=record["project"])
        else:
            found = [
                p
                for p in _call("listing projects", self.client.projects.list, title=self.title)
                if p.title == self.title
            ]
            if found:
                project = found[0]
                self.log(f"reusing Label Studio project {project.id} {self.title!r}")
            else:
                project = _call(
                    "creating the project",
                    self.client.projects.create,
                    title=self.title,
                    label_config=config,
                    description=f"raydal state dir {self.state_dir}",
                    show_collab_predictions=self.export.predictions == "preselect",
                )
                self.log(f"created Label Studio project {project.id} {self.title!r}")
            record["project"] = project.id
            self._save(record)
        shown = self.export.predictions == "preselect"  # "Use predictions to prelabel tasks" in the settings
        if (project.label_config or "").strip() != config.strip() or getattr(
            project, "show_collab_predictions", None
        ) != shown:
            _call(
                "updating the project's settings",
                self.client.projects.update,
                id=project.id,
                label_config=config,
                show_collab_predictions=shown,
            )
        return int(project.id)

    def _tasks(self, project: int) -> list[dict[str, Any]]:
        """The project's tasks made by raydal (``data.raydal_id``), with their annotations."""
        pages = _call("listing tasks", self.client.tasks.list, project=project, fields="all", page_size=PAGE_SIZE)
        out = []
        for item in _call("listing tasks", list, pages):
            task = item if isinstance(item, dict) else item.dict()
            if isinstance(task.get("data"), dict) and labelstudio.ID_KEY in task["data"]:
                out.append(task)
        return out

    # -- pull ----------------------------------------------------------------
    def _pull(self, tasks: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any] | None:
        from raydal.al.humanloop import import_labels

        seen = set(record["seen"])
        fresh = [t for t in tasks if any(_key(a) not in seen for a in t.get("annotations") or [])]
        if not fresh:
            return None
        export = [
            {
                "id": t["id"],
                "data": {labelstudio.ID_KEY: t["data"][labelstudio.ID_KEY]},
                "annotations": [_annotation(a) for a in t["annotations"]],
            }
            for t in fresh
        ]
        data = json.dumps(export, indent=1, sort_keys=True).encode("utf-8")
        name = f"pull-{hashlib.sha256(data).hexdigest()[:16]}.json"
        self.store.write_bytes(data, PULL_DIR, name)
        try:
            result = import_labels(
                self.state_dir, self.store.local_path(PULL_DIR, name), annotator=self.annotator, **self.import_options
            )
        except LabelImportError as err:
            if err.problems:  # a label that fails validation: the team fixes it in Label Studio
                raise
            result = None  # nothing new (answers equal to those imported before): nothing to do
        record["seen"] = sorted(seen | {_key(a) for t in fresh for a in t["annotations"]})
        self._save(record)
        if result and not result["already_imported"]:
            self.log(
                f"imported {result['imported']} labels from {len(fresh)} Label Studio tasks; "
                f"{result['remaining']} still pending; next phase: {result['phase']}"
            )
        return result

    # -- push ----------------------------------------------------------------
    def _push(self, project: int, tasks: list[dict[str, Any]], record: dict[str, Any]) -> int:
        from raydal.al.humanloop import export_batch
        from raydal.constants import LABEL_STUDIO_TASKS

        state = self.store.load()
        if state.phase != "label" or state.pending is None:
            return 0
        present = {t["data"][labelstudio.ID_KEY] for t in tasks}
        missing = [i for i in state.pending["ids"] if i not in present and i not in state.labeled]
        if not missing:
            return 0
        folder = export_batch(self.state_dir, None, self.export, log=self.log)
        by_id = {t["data"][labelstudio.ID_KEY]: t for t in json.loads((folder / LABEL_STUDIO_TASKS).read_text())}
        order = labelstudio.most_uncertain_first(missing, state.pending.get("probs") or {})
        answer = _call(
            "importing tasks",
            self.client.projects.import_tasks,
            id=project,
            request=[by_id[i] for i in order],
            return_task_ids=True,
        )
        task_ids = list(getattr(answer, "task_ids", None) or [])
        record["pushed"].update({sid: (task_ids[n] if n < len(task_ids) else None) for n, sid in enumerate(order)})
        self._save(record)
        self.log(
            f"pushed {len(order)} tasks of batch {state.pending['iteration']} to Label Studio project "
            f"{project}, most uncertain first"
        )
        return len(order)

    # -- the loop ------------------------------------------------------------
    def follow(
        self, train: Callable[[str], Any] | None = None, poll_s: float = 30.0, max_polls: int | None = None
    ) -> dict[str, Any]:
        """Sync until the run is done: when a batch is complete, ``train(state_dir)`` trains and
        queries the next (default ``train_and_query``), and the next sync pushes it.

        max_polls: stop after this many syncs that found nothing to do (None: never).
        """
        train = train or (lambda d: train_and_query(d, log=self.log))
        idle = 0
        while True:
            summary = self.sync()
            if summary["phase"] == "done":
                self.log("the run is done: every batch is labeled and trained on")
                return summary
            if summary["phase"] != "label":
                train(self.state_dir)
                if self.store.load().phase == summary["phase"]:
                    raise StateError(
                        f"{self.state_dir}: training did not move the run on from phase "
                        f"{summary['phase']!r}; run `raydal run ... --mode human` to see why."
                    )
                idle = 0
                continue
            if not (summary["imported"] or summary["pushed"]):
                idle += 1
                if max_polls is not None and idle >= max_polls:
                    return summary
            time.sleep(poll_s)


def train_and_query(state_dir: str, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Resume the run in ``state_dir`` as ``raydal run --mode human`` does: train on the labels,
    query the next batch, stop when labels are needed (or the run is done)."""
    from raydal.al.executor import executor_needs_ray
    from raydal.al.experiment import run_experiment
    from raydal.config import ALConfig

    state = StateStore(state_dir).load()
    config = ALConfig.from_dict({**state.config, "state_dir": state_dir})
    if config.mode != "human":
        raise StateError(f"{state_dir} is a {config.mode!r} run; Label Studio links to --mode human runs.")
    if executor_needs_ray(config.executor):
        from raydal.distributed.driver import run_trial_on_ray
        from raydal.distributed.session import ensure_ray

        log(f"ray: {ensure_ray()}")
        runner = run_trial_on_ray
    else:
        from raydal.al.experiment import run_trial_local as runner
    return run_experiment(config, 1, runner)


def _key(annotation: Mapping[str, Any]) -> str:
    """An annotation as raydal saw it: its id and when it was last changed."""
    return f"{annotation.get('id')}@{annotation.get('updated_at')}"


def _annotation(a: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an annotation that raydal reads (Label Studio JSON export shape)."""
    keep = ("id", "completed_by", "result", "was_cancelled", "ground_truth", "created_at", "updated_at", "lead_time")
    return {k: _jsonable(a.get(k)) for k in keep if k in a}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``, with the SDK's and the network's errors as ``LabelStudioError`` saying what failed."""
    try:
        return fn(*args, **kwargs)
    except RaydalError:
        raise
    except Exception as err:  # the SDK's ApiError, httpx's transport errors
        status = getattr(err, "status_code", None)
        body = str(getattr(err, "body", "") or err)[:300]
        if status in (401, 403):
            fix = f"check the access token (--api-key or {ENV_API_KEY})"
        elif status is None:
            fix = f"is Label Studio running at that address? (--url or {ENV_URL})"
        else:
            fix = "see Label Studio's answer above"
        raise LabelStudioError(f"Label Studio: {what} failed ({status or type(err).__name__}: {body}); {fix}.") from err
