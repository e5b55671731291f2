"""The ``raydal`` console script: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from raydal.constants import F1_CURVES_PNG, REPORT_DIR, REPORT_MD, SWEEP_JSON, SWEEP_MD
from raydal.exceptions import ConfigError, RaydalError
from raydal.settings import LazyChoices


def _location(text: str) -> Path | str:
    """A path argument: a storage URI (``s3://bucket/key``) stays a str, anything else is a Path."""
    return text if "://" in text else Path(text)


def _cmd_synth(args: argparse.Namespace) -> None:
    from raydal.data.synth import synthesize

    options = {
        "seed": args.seed,
        "dtype": args.dtype,
        "labeled_share": args.labeled_share,
        "version": args.bigearthnet_version,
    }
    options = {k: v for k, v in options.items() if v is not None}
    out = synthesize(args.dataset, args.out_dir, n=args.n, size=args.size, **options)
    print(f"wrote a fake {args.dataset} archive to {out}")


def _default(obj, name: str):
    """The default of a parameter of a class's constructor or a function, from its signature (one place)."""
    import inspect

    return inspect.signature(obj.__init__ if isinstance(obj, type) else obj).parameters[name].default


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options among ``names`` given on the command line (an unset flag is None: not given)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


_READER = "reader."


def _reader_settings(args: argparse.Namespace) -> dict:
    """The reader settings given on the command line (only those set), checked against the
    dataset's reader: a flag of another reader is refused, naming the reader's own."""
    import dataclasses

    from raydal.data import reader_class

    given = {k[len(_READER) :]: v for k, v in vars(args).items() if k.startswith(_READER) and v is not None}
    settings = reader_class(args.dataset).Settings
    own = [f.name for f in dataclasses.fields(settings)] if settings is not None else []
    foreign = sorted(set(given) - set(own))
    if foreign:
        raise ConfigError(
            f"{foreign} are not settings of the {args.dataset} reader (its settings: {own or 'none'}). "
            "Fix: leave those flags out (`raydal prepare --help` and `raydal run --help` group them by reader)."
        )
    return given


def _cmd_prepare(args: argparse.Namespace) -> None:
    from raydal.data.shards import prepare

    manifest = prepare(
        args.dataset,
        args.root,
        args.out_dir,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        **_given(args, "size", "seed", "shard_size"),
        **_reader_settings(args),
    )
    counts = ", ".join(f"{k} {v['count']}" for k, v in manifest.splits.items())
    print(f"prepared {manifest.dataset} shards in {args.out_dir} ({counts})")


def _datasets() -> LazyChoices:
    from raydal.data import list_datasets

    return LazyChoices(list_datasets)


def _setting_sources():
    """The config classes whose declared fields become run flags, with their flag dest prefix."""
    from raydal.config import ALConfig, ExperimentConfig
    from raydal.training.config import TrainConfig

    return (
        ("experiment", ExperimentConfig, ""),
        ("run (ALConfig)", ALConfig, ""),
        ("training (TrainConfig; 'train:' in a --config file)", TrainConfig, "train."),
    )


def _setting_help(f, default_note: str | None = None) -> str:
    """A declaration's help, its choices and range, and its default (``default_note`` instead
    where the default is not the declaration's alone)."""
    meta = f.metadata
    text = meta["help"].replace("%", "%%")
    if meta["choices"] is not None:
        text += "; one of %(choices)s"
    if meta["range"] is not None:
        text += f"; {meta['range']}"
    default = f.default if f.default is not dataclasses.MISSING else None
    if default_note is not None:
        text += f" ({default_note})"
    elif default not in (None, ""):
        shown = ",".join(f"{v:g}" for v in default) if isinstance(default, (tuple, list)) else default
        text += f" (default: {shown})"
    return text


def add_setting_flags(g, cls, prefix: str = "", help_for=None, added: dict | None = None, only=None) -> None:
    """A flag on ``g`` for every field of dataclass ``cls`` declared with ``raydal.settings.setting``.

    The flag is ``--field-name`` (or the declared ``flag``); a bool gets ``--x``/``--no-x`` (or the
    declared ``off_flag``); its type, choices, help and metavar are the declaration's. Every flag
    defaults to None, "not given", so the default stays the declaration's. dest is ``prefix`` +
    the field name. help_for(field) -> help text (default: :func:`_setting_help`). added: flag ->
    dest of flags already on the parser: a second declaration of one flag (two readers' same
    setting) shares it. only: the names of the fields to add (default: all).
    """
    from raydal.settings import declared_settings, value_type

    added = {} if added is None else added
    for f in declared_settings(cls):
        meta = f.metadata
        if not meta["cli"] or (only is not None and f.name not in only):
            continue
        dest = prefix + f.name
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        if flag in added:
            if added[flag] != dest:
                raise TypeError(f"{cls.__name__}.{f.name} declares {flag}, which is {added[flag]}'s flag already")
            continue
        added[flag] = dest
        help_text = help_for(f) if help_for else _setting_help(f)
        base, _ = value_type(cls, f.name)
        if base is bool:
            pair = g.add_mutually_exclusive_group()
            pair.add_argument(flag, dest=dest, action="store_true", default=None, help=help_text)
            pair.add_argument(
                meta["off_flag"] or "--no-" + flag[2:],
                dest=dest,
                action="store_false",
                default=None,
                help=f"the opposite of {flag}",
            )
            continue
        g.add_argument(
            flag,
            dest=dest,
            default=None,
            help=help_text,
            type=meta["parse"] or (base if base in (int, float) else str),
            choices=meta["choices"],
            metavar=meta["metavar"] or f.name.upper(),
        )


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``raydal run`` / ``jobs/al_*.py`` / ``raydal sweep``, derived from the config dataclasses.

    Every field declared with ``raydal.settings.setting`` gets a flag (:func:`add_setting_flags`).
    Every flag defaults to None, "not given": the default comes from the config layers
    (``raydal.config.resolve_config``).
    """
    from raydal.config import PAPER_PRESETS, PRESETS, preset_layer

    papers = [preset_layer("paper", dataset) for dataset in PAPER_PRESETS]
    for title, cls, prefix in _setting_sources():

        def help_for(f, prefix=prefix):
            layers = [p.get("train", {}) for p in papers] if prefix else papers
            if any(f.name in layer for layer in layers):
                return _setting_help(f, f"default: the dataset's paper preset, else {f.default}")
            return _setting_help(f)

        add_setting_flags(p.add_argument_group(title), cls, prefix, help_for)
    add_reader_arguments(p)  # ExperimentConfig.reader: handed to the reader when the shards are prepared
    g = p.add_argument_group("configuration")
    g.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="paper (default): the dataset's protocol from the paper (label budget, 3 trials); "
        "demo: small model and archive, minutes on a laptop",
    )
    g.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML file of config fields (as --print-config writes); flags override it",
    )
    g.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML (loadable with --config), each value marked "
        "with its source (built-in, paper, preset, file, flag), and exit",
    )
    g.add_argument("--fork", action="store_true", help="continue an existing state dir under a changed config")


def _overrides(args: argparse.Namespace) -> dict:
    """The config flags given on the command line (``train.*`` and the reader's as nested mappings)."""
    from raydal.settings import declared_settings

    out: dict = {}
    reader = _reader_settings(args)
    if reader:
        out["reader"] = reader
    for _, cls, prefix in _setting_sources():
        for f in declared_settings(cls):
            value = getattr(args, prefix + f.name, None)
            if value is None or not f.metadata["cli"]:
                continue
            if prefix:
                out.setdefault(prefix.rstrip("."), {})[f.name] = value
            else:
                out[f.name] = value
    return out


def config_from_args(args: argparse.Namespace):
    """The ``ExperimentConfig`` of parsed run flags: layers merged by ``raydal.config.resolve_config``."""
    from raydal.config import resolve_config

    return resolve_config(args.dataset, args.preset, args.config, _overrides(args))


def _print_config(exp, args: argparse.Namespace, **sources: str) -> None:
    """``--print-config``: the resolved YAML, each value marked with its source (``sources``: a
    caller's own, e.g. the sweep's trials)."""
    from raydal.config import config_sources

    print(exp.to_yaml({**config_sources(args.dataset, args.preset, args.config, _overrides(args)), **sources}), end="")


def _cmd_run(args: argparse.Namespace) -> None:
    from raydal.al.executor import executor_needs_ray
    from raydal.al.experiment import ensure_shards, generated_archive_note, run_experiment

    exp = config_from_args(args)
    if args.print_config:
        _print_config(exp, args)
        return
    note = generated_archive_note(exp, paper=args.preset in (None, "paper"))
    if note:
        print(note)
    config = exp.run
    ensure_shards(
        config.dataset,
        config.shards_dir,
        exp.data_root,
        exp.image_size,
        exp.fake_n,
        seed=config.seed,
        reader=exp.reader,
    )
    if executor_needs_ray(config.executor):
        from raydal.distributed.driver import run_trial_on_ray, run_trials_on_ray
        from raydal.distributed.session import ensure_ray

        print(f"ray: {ensure_ray()}")
        runner, run_many = run_trial_on_ray, run_trials_on_ray
    else:
        from raydal.al.experiment import run_trial_local as runner

        run_many = None
    parallel = exp.parallel_trials
    if exp.compare:
        from raydal.al.experiment import comparison_text, run_comparison

        result = run_comparison(
            config, exp.trials, runner, baseline=exp.compare, fork=args.fork, run_many=run_many, parallel=parallel
        )
        summaries = result["strategy"] + result["baseline"]
    else:
        summaries = run_experiment(config, exp.trials, runner, fork=args.fork, run_many=run_many, parallel=parallel)
    for s in summaries:
        curve = ", ".join(f"{c['n_labeled']}: {100 * c['micro_f1']:.1f}" for c in s["curve"])
        print(f"{s['state_dir']} [{s['strategy']}, {s['phase']}] test micro-F1 by labels: {curve}")
    if any(s["phase"] != "done" for s in summaries):
        print(f"labels needed: raydal export {summaries[0]['state_dir']}")
    if exp.compare and result["report"] is not None:
        print(comparison_text(result))
    elif args.report and any(s["curve"] for s in summaries):
        from raydal.al.report import build_report

        out = Path(config.state_dir) / REPORT_DIR
        build_report([s["state_dir"] for s in summaries], out)
        print(f"report: {out / REPORT_MD} and {out / F1_CURVES_PNG}")
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

    if args.trials is not None and args.trials != 1:
        raise ConfigError(
            f"--trials {args.trials}: a sweep runs one trial per grid point; repeat trials by "
            f"sweeping the seed instead, e.g. --param seed=0,1,2."
        )
    exp = dataclasses.replace(config_from_args(args), trials=1)  # the base of every grid point
    if exp.compare:
        raise ConfigError(
            "--compare belongs to `raydal run`; a sweep compares its points in sweep.md "
            "(add random to the sweep with --param strategy=random,mge+clustering)."
        )
    if args.print_config:
        _print_config(exp, args, trials="sweep (one trial per grid point)")
        return
    config = exp.run
    space = _param_space(args)
    ensure_shards(
        config.dataset,
        config.shards_dir,
        exp.data_root,
        exp.image_size,
        exp.fake_n,
        seed=config.seed,
        reader=exp.reader,
    )
    options = {k[len(_SWEEP) :]: v for k, v in vars(args).items() if k.startswith(_SWEEP) and v is not None}
    run_sweep(config, space, args.sweep_dir, **options)
    print((Path(args.sweep_dir) / SWEEP_MD).read_text())
    print(f"sweep results: {Path(args.sweep_dir) / SWEEP_JSON}; curves: raydal report {args.sweep_dir}")


_SWEEP = "sweep."


def _expand_state_dirs(dirs: list[Path]) -> list[str]:
    """A state dir, or a folder of trial-*/ state dirs."""
    from raydal.constants import STATE_FILE

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
    out = args.out or Path(dirs[0]) / REPORT_DIR
    at = [int(x) for x in args.at.split(",")] if args.at else None
    summary = build_report(dirs, out, at=at)
    print((Path(summary["out_dir"]) / REPORT_MD).read_text())
    print(f"report written to {summary['out_dir']} (report.md, report.json, f1_curves.png)")


def _cmd_export(args: argparse.Namespace) -> None:
    from raydal.al.humanloop import ExportOptions, export_batch
    from raydal.settings import declared_settings

    options = ExportOptions(**_given(args, *(f.name for f in declared_settings(ExportOptions))))
    out = export_batch(str(args.state_dir), args.out, options, log=print)
    print(
        f"exported the pending batch to {out}: batch.csv (fill in 'labels'), "
        "label_studio_tasks.json + label_studio_config.xml (a Label Studio project), thumbs/"
    )
    if options.images == "local-files":
        print(
            f"in the Label Studio project, add a Local files source storage with the path {out / 'thumbs'} "
            "(do not sync it), then import label_studio_tasks.json"
        )


def _cmd_import(args: argparse.Namespace) -> None:
    from raydal.al.humanloop import import_labels

    result = import_labels(
        str(args.state_dir),
        args.file,
        allow_changes=args.allow_changes,
        **_given(args, "annotator", "max_bytes", "on_disagreement"),
    )
    if result["already_imported"]:
        print(f"{args.file} was already imported: nothing changed")
        return
    print(
        f"imported {result['imported']} labels ({result['format']}); {result['changed']} changed; "
        f"{result['unchanged']} unchanged; {len(result['skipped'])} unlabelable; "
        f"{result['remaining']} still pending; next phase: {result['phase']}"
    )
    for key, what in (
        ("resolved", "disagreements resolved"),
        ("skipped", "skipped: marked unlabelable, out of the pool"),
        ("unannotated", "not annotated yet (still pending)"),
        ("not_in_file", "pending ids not in this file (still pending)"),
    ):
        if result[key]:
            shown = ", ".join(result[key][:10]) + (" ..." if len(result[key]) > 10 else "")
            print(f"{len(result[key])} {what}: {shown}")


def _cmd_relabel(args: argparse.Namespace) -> None:
    from raydal.al.humanloop import relabel

    result = relabel(str(args.state_dir), {args.id: args.labels}, by=args.by)
    if result["changed"]:
        print(
            f"{args.id}: label changed; the next training uses it (the earlier answer is kept in the state's "
            "corrections)"
        )
    else:
        print(
            f"{args.id}: "
            + ("labeled (it was pending)" if result["imported"] else "already has these labels: nothing changed")
        )


def _cmd_skip(args: argparse.Namespace) -> None:
    from raydal.al.humanloop import import_labels, skip_images

    by = args.by if args.by is not None else _default(import_labels, "annotator")
    result = skip_images(str(args.state_dir), args.ids, reason=args.reason, by=by)
    print(
        f"marked {len(result['skipped'])} image(s) unlabelable ({result['unchanged']} were already); "
        f"{result['remaining']} still pending; next phase: {result['phase']}"
    )


def _cmd_label_studio(args: argparse.Namespace) -> None:
    from raydal.al.lssync import Link, connect

    imports = {"allow_changes": args.allow_changes or None, "on_disagreement": args.on_disagreement}
    export = {"predictions": args.predictions} if args.predictions else {}
    link = Link(
        str(args.state_dir),
        connect(args.url, args.api_key),
        title=args.project,
        export=export,
        import_options={k: v for k, v in imports.items() if v},
        log=print,
        **_given(args, "annotator"),
    )
    if args.follow:
        summary = link.follow(**({"poll_s": args.poll} if args.poll is not None else {}))
    else:
        summary = link.sync()
    print(
        f"Label Studio project {summary['project']}: {summary['pending']} still pending; "
        f"phase {summary['phase']}"
        + (
            ""
            if args.follow or summary["phase"] != "train"
            else f" (train and query the next batch: raydal label-studio {args.state_dir} "
            "--follow, or raydal run ... --mode human)"
        )
    )


def _cmd_predict(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    from raydal.predict import predict

    given = {
        "executor": args.executor,
        "threshold": args.threshold,
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
    }
    out = predict(
        args.model,
        args.input,
        args.out_dir,
        export=args.export,
        skip_bad=args.skip_bad,
        **{k: v for k, v in given.items() if v is not None},
    )
    n = pq.read_metadata(out).num_rows
    print(
        f"wrote predictions of {n} images to {out} and {out.with_suffix('.csv')}"
        + (f"; the model for use outside raydal: {out.parent / 'model'}" if args.export else "")
    )


def add_reader_arguments(p: argparse.ArgumentParser) -> None:
    """The readers' settings as flags, one group per dataset, derived from each reader's
    declared ``Settings`` (``raydal.data.base.ArchiveReader.Settings``): a new reader's
    settings get flags without a CLI edit. dest: ``reader.<setting>``."""
    from raydal.data import list_datasets, reader_class

    added: dict = {}
    for name in list_datasets():
        reader = reader_class(name)
        if reader.Settings is None:
            continue
        add_setting_flags(p.add_argument_group(f"{name} reader settings"), reader.Settings, _READER, added=added)


def build_parser() -> argparse.ArgumentParser:
    from raydal.data import bigearthnet, synth
    from raydal.data.shards import prepare
    from raydal.data.synth import bigearthnet as synth_ben
    from raydal.data.synth import folder as synth_folder

    parser = argparse.ArgumentParser(prog="raydal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a fake archive in a published layout")
    p.add_argument("dataset", choices=_datasets(), metavar="DATASET", help="%(choices)s")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--n", type=int, default=None, help="number of images (default per dataset)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the real size)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seed of the generated archive (default {_default(synth.synthesize, 'seed')})",
    )
    p.add_argument(
        "--dtype",
        choices=synth_folder.DTYPES,
        default=None,
        help=f"folder: pixel type (default {_default(synth_folder.write_archive, 'dtype')})",
    )
    p.add_argument(
        "--labeled-share",
        type=float,
        default=None,
        help="folder: share of images with labels in labels.csv "
        f"(default {_default(synth_folder.write_archive, 'labeled_share')})",
    )
    p.add_argument(
        "--bigearthnet-version",
        choices=[v for v in bigearthnet.VERSIONS if v != "auto"],  # a concrete layout to write
        default=None,
        help=f"bigearthnet: layout (default {_default(synth_ben.write_archive, 'version')})",
    )
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare", help="validate an archive and pack it into Parquet shards")
    p.add_argument("dataset", choices=_datasets(), metavar="DATASET", help="%(choices)s")
    p.add_argument("root", type=Path, help="the archive's folder")
    p.add_argument("out_dir", type=_location, help="a folder, or a storage URI (s3://bucket/shards)")
    p.add_argument("--size", type=int, default=None, help="model input side in pixels (default per dataset)")
    p.add_argument(
        "--seed", type=int, default=None, help=f"seed of the val/test/pool split (default {_default(prepare, 'seed')})"
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help=f"images per Parquet shard (default {_default(prepare, 'shard_size')})",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad files and list them in OUT_DIR/quarantine.csv instead of stopping",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing shard set in OUT_DIR")
    add_reader_arguments(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("run", help="run (or resume) an active-learning experiment")
    p.add_argument("dataset", choices=_datasets(), metavar="DATASET", help="%(choices)s")
    add_run_arguments(p)
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the report at the end")
    p.set_defaults(func=_cmd_run)

    from raydal.al.sweep import SweepOptions

    p = sub.add_parser("sweep", help="Ray Tune sweep of AL settings (lambda, m, b, ...): one AL run per trial")
    p.add_argument("dataset", choices=_datasets(), metavar="DATASET", help="%(choices)s")
    p.add_argument("sweep_dir", type=Path, help="where trial state dirs, sweep.json and sweep.md go")
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=V1,V2",
        help="a grid axis: an ALConfig field (b, m, strategy, seed, ...) or train.FIELD "
        "(train.ll_lambda is lambda of eq. 3); repeat for more axes",
    )
    p.add_argument("--param-file", type=Path, default=None, help="YAML mapping of sweep keys to value lists")
    add_setting_flags(p.add_argument_group("sweep (raydal.al.sweep.SweepOptions)"), SweepOptions, _SWEEP)
    add_run_arguments(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="F1-vs-labels curves, tables and timings of one or more runs")
    p.add_argument("state_dirs", type=Path, nargs="+", help="state dirs, or folders of trial-*/ state dirs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default FIRST_STATE_DIR/report)")
    p.add_argument("--at", default=None, help="label counts for the table, e.g. 200,400")
    p.set_defaults(func=_cmd_report)

    from raydal.al.humanloop import DISAGREEMENT_POLICIES, ExportOptions, import_labels

    p = sub.add_parser("export", help="write the pending query batch for annotators (CSV, Label Studio, thumbnails)")
    p.add_argument("state_dir", type=_location)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default STATE_DIR/export/iter-NNNN, NNNN the iteration whose model queried the batch, or export/initial for the initial set; "
        "needed for a state dir on a storage URI)",
    )
    add_setting_flags(p, ExportOptions)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "import-labels",
        help="import annotators' labels (filled batch.csv, or a Label Studio JSON, JSON_MIN or CSV export)",
    )
    p.add_argument("state_dir", type=_location)
    p.add_argument("file", type=_location)
    p.add_argument(
        "--annotator",
        default=None,
        help=f"recorded as who labeled these samples (default {_default(import_labels, 'annotator')})",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=None,
        help=f"refuse label files larger than this many bytes (default {_default(import_labels, 'max_bytes')})",
    )
    p.add_argument(
        "--allow-changes",
        action="store_true",
        help="accept labels that differ from the ones imported before (a reviewer's correction); "
        "each change is recorded with who, when and the earlier answer",
    )
    p.add_argument(
        "--on-disagreement",
        default=None,
        metavar="|".join(DISAGREEMENT_POLICIES),
        help="several different answers for one image: refuse the import, keep the "
        "majority answer (a tie is refused), the latest, or the preferred annotator's "
        f"(default {_default(import_labels, 'on_disagreement')})",
    )
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("relabel", help="correct one image's label (recorded with who, when and the earlier answer)")
    p.add_argument("state_dir", type=_location)
    p.add_argument("id", help="the image id")
    p.add_argument("--labels", required=True, help="the new class names, joined by ';'")
    p.add_argument("--by", required=True, help="who corrects it (recorded)")
    p.set_defaults(func=_cmd_relabel)

    p = sub.add_parser("skip", help="mark images that cannot be labeled (cloudy, no data): they leave the pool")
    p.add_argument("state_dir", type=_location)
    p.add_argument("ids", nargs="+", help="image ids")
    p.add_argument("--reason", required=True, help="why they cannot be labeled (recorded)")
    p.add_argument(
        "--by",
        default=None,
        help=f"who decided (recorded; default {_default(import_labels, 'annotator')}, as import-labels --annotator)",
    )
    p.set_defaults(func=_cmd_skip)

    from raydal.al import lssync

    p = sub.add_parser(
        "label-studio",
        help="link a human-mode run to a Label Studio project: push the pending "
        "batch, pull finished annotations (--follow: and train, query, push on)",
    )
    p.add_argument("state_dir", type=_location)
    p.add_argument("--url", default=None, help=f"Label Studio's address (default ${lssync.ENV_URL})")
    p.add_argument("--api-key", default=None, help=f"a Label Studio access token (default ${lssync.ENV_API_KEY})")
    p.add_argument("--project", default=None, help="project title, made or reused (default: 'raydal STATE_DIR_NAME')")
    add_setting_flags(p, ExportOptions, only=("predictions",))
    p.add_argument(
        "--annotator", default=None, help=f"recorded as who labeled (default {_default(lssync.Link, 'annotator')})"
    )
    p.add_argument(
        "--allow-changes",
        action="store_true",
        help="accept answers changed in Label Studio as corrections (as import-labels --allow-changes)",
    )
    p.add_argument(
        "--on-disagreement",
        default=None,
        metavar="|".join(DISAGREEMENT_POLICIES),
        help="several different answers for one task: as import-labels --on-disagreement "
        f"(default {_default(import_labels, 'on_disagreement')})",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="keep going: when a batch is labeled, train, query and push "
        "the next, until the run is done (Ctrl-C stops)",
    )
    p.add_argument(
        "--poll",
        type=float,
        default=None,
        help=f"--follow: seconds between looks at Label Studio (default {_default(lssync.Link.follow, 'poll_s')})",
    )
    p.set_defaults(func=_cmd_label_studio)

    from raydal import predict as pr

    p = sub.add_parser("predict", help="predict images with a trained run's model; export the model")
    p.add_argument("model", type=_location, help="a run's state dir (its latest model) or a checkpoint folder")
    p.add_argument(
        "input", type=_location, help="prepared shards, or a folder of images (prepared with the run's settings)"
    )
    p.add_argument(
        "out_dir", type=Path, help="predictions.parquet, predictions.csv, model/ (model.pt2 + preprocessing.json)"
    )
    p.add_argument(
        "--executor",
        choices=pr.EXECUTORS,
        default=None,
        help=f"ray: Ray Data tasks; local: this process; auto: Ray when installed (default {_default(pr.predict, 'executor')})",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="predict a class when its probability >= this (default: the run's)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"images per forward pass (default {_default(pr.predict, 'batch_size')})",
    )
    p.add_argument("--concurrency", type=int, default=None, help="Ray Data tasks predicting at once")
    p.add_argument("--no-export", dest="export", action="store_false", help="skip the model export (model/model.pt2)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="a folder INPUT: skip unreadable images (listed in input-shards/quarantine.csv)",
    )
    p.set_defaults(func=_cmd_predict)
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
