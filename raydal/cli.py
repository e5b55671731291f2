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
    )
    counts = ", ".join(f"{k} {v['count']}" for k, v in manifest.splits.items())
    print(f"prepared {manifest.dataset} shards in {args.out_dir} ({counts})")


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
    p.set_defaults(func=_cmd_prepare)
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
