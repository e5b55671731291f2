"""Environment variables and the names of the files and folders raydal writes, defined once.

Modules import these names; none spells a variable or a file name itself (dataset
readers keep the names of the archives' own files as class constants).
"""

from __future__ import annotations

# -- environment variables -------------------------------------------------------------
#: Where ``raydal`` keeps Ray's session folders when it starts an embedded Ray.
ENV_RAY_TMPDIR = "RAYDAL_RAY_TMPDIR"
#: Address of a running Ray cluster; when unset an embedded local Ray is started.
ENV_RAY_ADDRESS = "RAY_ADDRESS"
#: Ray's variable naming the dashboard (State API) URL; set for the embedded Ray (session.ensure_ray).
ENV_RAY_API_SERVER_ADDRESS = "RAY_API_SERVER_ADDRESS"
#: Force the compute device ("cpu", "cuda", "cuda:1"); default: CUDA when present.
ENV_DEVICE = "RAYDAL_DEVICE"
#: Log level of Ray Train workers (default WARNING).
ENV_TRAIN_LOG_LEVEL = "RAYDAL_TRAIN_LOG_LEVEL"
#: Cache folder of downloaded/converted weights (default ~/.cache/raydal).
ENV_CACHE = "RAYDAL_CACHE"
#: Ray Data's switch for its progress bars; raydal sets it to "1" before starting Ray.
ENV_RAY_DATA_DISABLE_PROGRESS_BARS = "RAY_DATA_DISABLE_PROGRESS_BARS"
#: Ray Train's switch for its preemption watcher; raydal sets it to "0" for an embedded (one-machine) Ray.
ENV_RAY_TRAIN_PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
#: How often Ray Train's controller polls its workers (Ray's default 2 s); the embedded Ray sets
#: EMBEDDED_HEALTH_CHECK_INTERVAL_S unless the environment sets it.
ENV_RAY_TRAIN_HEALTH_CHECK_INTERVAL = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
EMBEDDED_HEALTH_CHECK_INTERVAL_S = "0.25"
#: Label Studio's folder for local-files serving (read by ``raydal export --images local-files``).
ENV_LS_DOCUMENT_ROOT = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
#: Fault injection (tests): die at the named points, e.g. ``train:mid`` or ``save:mid@2``
#: (see raydal/faults.py and docs/service.md).
ENV_FAULT = "RAYDAL_FAULT"
#: Fault injection (tests): append every fault point reached to this file.
ENV_FAULT_TRACE = "RAYDAL_FAULT_TRACE"
#: The standard AWS environment that configures s3:// storage (pyarrow reads it; raydal only
#: keys its per-process cache of storage filesystems on it).
STORAGE_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
)

# -- prepared shards (raydal prepare) ----------------------------------------------------
MANIFEST_NAME = "manifest.json"
#: A shard set's id index per split (``id``, ``labeled`` in shard order), beside the manifest:
#: ``ids-<split>.parquet`` (outside the split folders, so reading a split's folder never picks it up).
IDS_FILE = "ids-{split}.parquet"
QUARANTINE_NAME = "quarantine.csv"
SHARD_FORMAT_VERSION = 1
#: Canonical split names in prepared shards.
SPLITS = ("pool", "val", "test")

# -- checkpoints and training outputs ------------------------------------------------
#: A checkpoint folder holds the weights and their JSON description.
MODEL_FILE = "model.pt"
META_FILE = "model.json"
#: Optimizer/epoch state kept beside a checkpoint so training can resume mid-run.
TRAIN_STATE_FILE = "train_state.pt"
#: Per-epoch metrics of one training, and the checkpoint subfolder of its output folder.
HISTORY_FILE = "history.json"
CHECKPOINT_SUBDIR = "checkpoint"
#: Pool scores of a Ray iteration's training run, beside its checkpoint folder (a resumed query reads them).
POOL_SCORES_FILE = "pool_scores.npz"

# -- an active-learning state dir ------------------------------------------------------
STATE_FILE = "state.json"
CHECKPOINTS_DIR = "checkpoints"
EXPORT_DIR = "export"
REPORT_DIR = "report"
#: Trial k of an experiment lives in ``<state_dir>/trial-<k>``.
TRIAL_DIR_PREFIX = "trial-"

# -- human in the loop (raydal export) -------------------------------------------------
BATCH_CSV = "batch.csv"
LABEL_STUDIO_TASKS = "label_studio_tasks.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"
THUMBS_DIR = "thumbs"

# -- reports and sweeps ----------------------------------------------------------------
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
F1_CURVES_PNG = "f1_curves.png"
SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"
SWEEP_LOCK = ".sweep-trial.lock"
