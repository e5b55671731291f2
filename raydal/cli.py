"""The ``raydal`` console script: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raydal.exceptions import RaydalError

DATASETS = ("ucmerced", "treesatai", "bigearthnet")


def _cmd_synth(args: argparse.Namespace) -> None:
    from raydal.data.synth import synthesize

    out = synthesize(args.dataset, args.out_dir, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote a fake {args.dataset} archive to {out}")


def _reader_settings(args: argparse.Namespace) -> dict:
    """Reader settings given on the command line (only those set)."""
    settings = {"threshold": args.threshold, "band_order": args.band_order}
    return {k: v for k, v in settings.items() if v is not None}


def _cmd_prepare(args: argparse.Namespace) -> None:
    from raydal.data.shards import prepare

    manifest = prepare(
        args.dataset,
        args.root,
        args.out_dir,
        size=args.size,
        seed=args.seed,
        shard_size=args.shard_size,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        **_reader_settings(args),
    )
    counts = ", ".join(f"{k} {v['count']}" for k, v in manifest.splits.items())
    print(f"prepared {manifest.dataset} shards in {args.out_dir} ({counts})")


#: ``--preset demo``: a small model on a small generated archive, a few minutes on 2 CPU cores.
DEMO_PRESET = dict(
    backbone="smallcnn", size=32, fake_n=840, b=20, m=3, initial_labeled=40, iterations=4,
    epochs=8, batch_size=16, lr=0.05, num_workers=2, cpus_per_worker=0.5, score_concurrency=1,
)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``raydal run`` and ``jobs/al_*.py``. Unset flags take the paper's defaults."""
    g = p.add_argument_group("data")
    g.add_argument("--data-root", type=Path, default=None,
                   help="folder of a real archive; without it a fake archive is generated")
    g.add_argument("--shards-dir", type=Path, default=None,
                   help="prepared shards (made here if missing; default STATE_DIR/../shards-DATASET)")
    g.add_argument("--size", type=int, default=None, help="model input side in pixels (default: paper's)")
    g.add_argument("--fake-n", type=int, default=None, help="images in the generated fake archive")
    g = p.add_argument_group("active learning")
    g.add_argument("--state-dir", type=str, default=None, help="where the run's state lives (default runs/DATASET)")
    g.add_argument("--mode", choices=("simulation", "human"), default="simulation")
    g.add_argument("--strategy", default="mge+clustering",
                   help="query function: random, ll, tpd, mge, ll+clustering, tpd+clustering, mge+clustering")
    g.add_argument("--b", type=int, default=None, help="samples labeled per iteration (paper: 20 UCM, 1000 TreeSatAI)")
    g.add_argument("--m", type=int, default=None, help="candidate multiplier: cluster the m*b most uncertain")
    g.add_argument("--initial-labeled", type=int, default=None)
    g.add_argument("--iterations", type=int, default=None, help="query rounds (default 5, or until --label-budget)")
    g.add_argument("--label-budget", type=int, default=None, help="stop once this many samples are labeled")
    g.add_argument("--trials", type=int, default=1, help="repeat with seeds seed..seed+trials-1 (paper: 3)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--fork", action="store_true", help="continue an existing state dir under a changed config")
    g = p.add_argument_group("model and training")
    g.add_argument("--backbone", default=None, help="densenet121 (default), resnet18, resnet50, smallcnn")
    g.add_argument("--weights", default=None, help="local state-dict file to initialise the backbone from")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    start = g.add_mutually_exclusive_group()
    start.add_argument("--warm-start", dest="warm_start", action="store_true", default=None)
    start.add_argument("--cold-start", dest="warm_start", action="store_false")
    g = p.add_argument_group("execution")
    g.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="ray: Ray Train + Ray Data from a driver actor; local: all in this process")
    g.add_argument("--num-workers", type=int, default=None, help="Ray Train workers")
    g.add_argument("--gpu", action="store_true", help="train and score on GPUs")
    g.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs per Ray Train worker (default: 1, less on small machines so reads keep a CPU)")
    g.add_argument("--score-concurrency", type=int, default=None, help="Ray Data scoring actors")
    g.add_argument("--score-batch-size", type=int, default=None)
    g.add_argument("--preset", choices=("paper", "demo"), default="paper",
                   help="paper: the paper's settings; demo: small model and archive, minutes on a laptop")
    g.add_argument("--config", type=Path, default=None, help="YAML file of ALConfig fields (flags override it)")


def config_from_args(dataset: str, args: argparse.Namespace):
    """``(ALConfig, trials, data_root, size, fake_n)`` from parsed run flags."""
    from raydal.config import PAPER_DEFAULTS, ALConfig

    paper = PAPER_DEFAULTS[dataset]
    base: dict = ALConfig.from_yaml(args.config).to_dict() if args.config else {}
    preset = DEMO_PRESET if args.preset == "demo" else {}

    def pick(flag, default=None):
        value = getattr(args, flag, None)
        return value if value is not None else preset.get(flag, default)

    state_dir = args.state_dir or base.get("state_dir") or f"runs/{dataset}"
    shards = args.shards_dir or base.get("shards_dir") or Path(state_dir).parent / f"shards-{dataset}"
    train = dict(base.get("train", {}))
    for key in ("epochs", "lr", "batch_size"):
        train[key] = pick(key, train.get(key, paper["train"][key]))
    fields = dict(
        base,
        dataset=dataset,
        shards_dir=str(shards),
        state_dir=str(state_dir),
        mode=args.mode,
        strategy=args.strategy,
        b=pick("b", base.get("b", paper["b"])),
        m=pick("m", base.get("m", paper["m"])),
        initial_labeled=pick("initial_labeled", base.get("initial_labeled", paper["initial_labeled"])),
        iterations=pick("iterations", base.get("iterations", None if args.label_budget else 5)),
        label_budget=args.label_budget if args.label_budget is not None else base.get("label_budget"),
        seed=args.seed,
        backbone=pick("backbone", base.get("backbone", "densenet121")),
        weights=args.weights or base.get("weights"),
        warm_start=args.warm_start if args.warm_start is not None else base.get("warm_start", paper["warm_start"]),
        train=train,
        executor=args.executor,
        num_workers=pick("num_workers", base.get("num_workers", 1)),
        use_gpu=bool(args.gpu or base.get("use_gpu", False)),
        cpus_per_worker=pick("cpus_per_worker", base.get("cpus_per_worker")),
        score_concurrency=pick("score_concurrency", base.get("score_concurrency", 1)),
        score_batch_size=pick("score_batch_size", base.get("score_batch_size", 64)),
    )
    size = pick("size", paper["image_size"])
    return ALConfig.from_dict(fields), args.trials, args.data_root, size, pick("fake_n")


def _cmd_run(args: argparse.Namespace) -> None:
    from raydal.al.experiment import ensure_shards, run_experiment

    config, trials, data_root, size, fake_n = config_from_args(args.dataset, args)
    ensure_shards(config.dataset, config.shards_dir, data_root, size, fake_n, seed=config.seed)
    if config.executor == "ray":
        from raydal.distributed.driver import run_trial_on_ray
        from raydal.distributed.session import ensure_ray

        print(f"ray: {ensure_ray()}")
        runner = run_trial_on_ray
    else:
        from raydal.al.experiment import run_trial_local as runner
    summaries = run_experiment(config, trials, runner, fork=args.fork)
    for s in summaries:
        curve = ", ".join(f"{c['n_labeled']}: {100 * c['micro_f1']:.1f}" for c in s["curve"])
        print(f"{s['state_dir']} [{s['strategy']}, {s['phase']}] test micro-F1 by labels: {curve}")
    if any(s["phase"] != "done" for s in summaries):
        print(f"labels needed: raydal export {summaries[0]['state_dir']}")
    if args.report and any(s["curve"] for s in summaries):
        from raydal.al.report import build_report

        out = Path(config.state_dir) / "report"
        build_report([s["state_dir"] for s in summaries], out)
        print(f"report: {out / 'report.md'} and {out / 'f1_curves.png'}")
    print(f"results: {config.state_dir}")


def _parse_value(text: str):
    """``"5"`` -> 5, ``"0.1"`` -> 0.1, ``"true"`` -> True, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _param_space(args: argparse.Namespace) -> dict:
    """``--param KEY=V1,V2`` (repeatable) and ``--param-file YAML`` -> grid values per key."""
    import yaml

    from raydal.exceptions import ConfigError

    space: dict = {}
    if args.param_file:
        data = yaml.safe_load(args.param_file.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{args.param_file} must map sweep keys to lists of values.")
        space.update({k: v if isinstance(v, list) else [v] for k, v in data.items()})
    for item in args.param or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"--param {item!r} must look like KEY=V1,V2 (e.g. --param b=10,20,40).")
        space[key.strip()] = [_parse_value(v.strip()) for v in values.split(",")]
    if not space:
        raise ConfigError("Nothing to sweep: give --param KEY=V1,V2 (e.g. --param train.ll_lambda=0.05,0.1,0.2).")
    return space


def _cmd_sweep(args: argparse.Namespace) -> None:
    from raydal.al.experiment import ensure_shards
    from raydal.distributed.tune import run_sweep

    config, _, data_root, size, fake_n = config_from_args(args.dataset, args)
    space = _param_space(args)
    ensure_shards(config.dataset, config.shards_dir, data_root, size, fake_n, seed=config.seed)
    resources = {"CPU": args.cpus_per_trial}
    if args.gpus_per_trial:
        resources["GPU"] = args.gpus_per_trial
    run_sweep(config, space, args.sweep_dir, num_samples=args.num_samples,
              max_concurrent_trials=args.max_concurrent_trials, resources_per_trial=resources,
              metric=args.metric, scheduler=None if args.scheduler == "fifo" else args.scheduler)
    print((Path(args.sweep_dir) / "sweep.md").read_text())
    print(f"sweep results: {Path(args.sweep_dir) / 'sweep.json'}; curves: raydal report {args.sweep_dir}")


def _expand_state_dirs(dirs: list[Path]) -> list[str]:
    """A state dir, or a folder of trial-*/ state dirs."""
    from raydal.al.state import STATE_FILE

    out: list[str] = []
    for d in dirs:
        if (d / STATE_FILE).exists():
            out.append(str(d))
        else:
            trials = sorted(p.parent for p in d.glob(f"*/{STATE_FILE}"))
            out.extend(str(t) for t in trials) if trials else out.append(str(d))
    return out


def _cmd_report(args: argparse.Namespace) -> None:
    from raydal.al.report import build_report

    dirs = _expand_state_dirs(args.state_dirs)
    out = args.out or Path(dirs[0]) / "report"
    at = [int(x) for x in args.at.split(",")] if args.at else None
    summary = build_report(dirs, out, at=at)
    print((Path(summary["out_dir"]) / "report.md").read_text())
    print(f"report written to {summary['out_dir']} (report.md, report.json, f1_curves.png)")


def _cmd_export(args: argparse.Namespace) -> None:
    from raydal.al.humanloop import export_batch

    out = export_batch(str(args.state_dir), args.out)
    print(f"exported the pending batch to {out}: batch.csv (fill in 'labels'), "
          "label_studio_tasks.json + label_studio_config.xml, thumbs/")


def _cmd_import(args: argparse.Namespace) -> None:
    from raydal.al.humanloop import import_labels

    result = import_labels(str(args.state_dir), args.file, annotator=args.annotator)
    if result["already_imported"]:
        print(f"{args.file} was already imported: nothing changed")
    else:
        print(f"imported {result['imported']} labels; {result['remaining']} still pending; next phase: {result['phase']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a fake archive in a published layout")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--n", type=int, default=None, help="number of images (default per dataset)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the real size)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="validate an archive and pack it into Parquet shards")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("root", type=Path, help="the archive's folder")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--size", type=int, default=None, help="model input side in pixels (default per dataset)")
    p.add_argument("--seed", type=int, default=0, help="seed of the val/test/pool split")
    p.add_argument("--shard-size", type=int, default=512, help="images per Parquet shard")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad files and list them in OUT_DIR/quarantine.csv instead of stopping",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing shard set in OUT_DIR")
    p.add_argument("--threshold", type=float, default=None,
                   help="TreeSatAI: keep a genus when its area fraction is > this (default 0.07)")
    p.add_argument("--band-order", default=None,
                   help="TreeSatAI aerial band order: torchgeo (IR,G,B,R; default) or nir-rgb")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("run", help="run (or resume) an active-learning experiment")
    p.add_argument("dataset", choices=DATASETS)
    add_run_arguments(p)
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the report at the end")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="Ray Tune sweep of AL settings (lambda, m, b, ...): one AL run per trial")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("sweep_dir", type=Path, help="where trial state dirs, sweep.json and sweep.md go")
    p.add_argument("--param", action="append", metavar="KEY=V1,V2",
                   help="a grid axis: an ALConfig field (b, m, strategy, seed, ...) or train.FIELD "
                        "(train.ll_lambda is lambda of eq. 3); repeat for more axes")
    p.add_argument("--param-file", type=Path, default=None, help="YAML mapping of sweep keys to value lists")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--max-concurrent-trials", type=int, default=None)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--metric", default="auc_micro_f1",
                   help="rank trials by this (val_auc_micro_f1 to pick settings without touching test)")
    p.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo")
    add_run_arguments(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="F1-vs-labels curves, tables and timings of one or more runs")
    p.add_argument("state_dirs", type=Path, nargs="+", help="state dirs, or folders of trial-*/ state dirs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default FIRST_STATE_DIR/report)")
    p.add_argument("--at", default=None, help="label counts for the table, e.g. 200,400")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="write the pending query batch for annotators")
    p.add_argument("state_dir", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import-labels", help="import annotators' labels (filled batch.csv or Label Studio JSON)")
    p.add_argument("state_dir", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--annotator", default="annotator", help="recorded as who labeled these samples")
    p.set_defaults(func=_cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RaydalError as err:
        print(f"raydal {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
