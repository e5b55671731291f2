"""raydal's exceptions: one base class, each message names the culprit and the fix."""

from __future__ import annotations


class RaydalError(Exception):
    """Base class of every error raydal raises on purpose."""


class ConfigError(RaydalError, ValueError):
    """A parameter or config file value is invalid.

    Messages follow scikit-learn's form: "The 'b' parameter of QueryConfig must
    be an int >= 1. Got 0 instead."
    """


class DatasetNotFoundError(RaydalError, FileNotFoundError):
    """An archive or prepared shard set is not where it was looked for."""


class DatasetError(RaydalError):
    """An archive holds bad input: corrupt images, wrong bands, bad label rows.

    ``problems`` lists every offending ``(location, reason)`` pair so a user can
    fix all of them in one pass.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            shown = "\n".join(f"  - {where}: {why}" for where, why in self.problems[:50])
            more = len(self.problems) - 50
            if more > 0:
                shown += f"\n  ... and {more} more"
            message = f"{message}\n{shown}"
        super().__init__(message)


class ModelError(RaydalError):
    """A model cannot be built or loaded (unknown backbone, bad weights file)."""


class QueryError(RaydalError, ValueError):
    """A query function got inputs it cannot rank (NaN scores, wrong shapes)."""


class StateError(RaydalError):
    """The active-learning state directory is missing, corrupt or belongs to another config."""


class StateLockedError(StateError):
    """Another process holds the state dir (a running job, an import): ``holder`` says who."""

    def __init__(self, message: str, holder: dict | None = None):
        self.holder = dict(holder or {})
        super().__init__(message)


class StorageError(StateError):
    """Writing the state or a checkpoint failed (disk full, storage not answering); the
    previous state is intact and the run resumes once storage is back."""


class LabelImportError(RaydalError):
    """An annotator's label file is invalid; ``problems`` lists every bad row."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {w}: {r}" for w, r in self.problems)
        super().__init__(message)
