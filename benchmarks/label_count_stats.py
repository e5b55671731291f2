"""Does an image statistic of the generated UC Merced archive track the number of labels?

    .venv/bin/python benchmarks/label_count_stats.py [--n 300] [--size 64] [--seed 0] [--calibrated]
    .venv/bin/python benchmarks/label_count_stats.py --checkpoint CKPT_DIR --shards SHARDS_DIR

Generates an archive (``raydal.data.synth``), reads it back through the real
reader and prints the Spearman rank correlation of each image's label count
with its mean brightness, pixel standard deviation, gradient energy (mean
squared difference of neighbouring pixels) and the feature norm ‖h‖ of a
randomly initialised smallcnn (3 initialisations). Then the same for the
painter with one slot per label (``fill_grid=False``, how the archive was
painted before issue 17) on the same labels. ``--calibrated``: the archive (and
the one-slot painting) with the fidelity study's calibrated difficulty
(``raydal.data.synth.ucmerced.CALIBRATED``). ``--checkpoint``/``--shards``: instead,
the feature norm ‖h‖ of a *trained* model (a raydal checkpoint folder, e.g. a
trial's ``checkpoints/iter-0008/checkpoint``) on the pool split of prepared
shards, against each image's label count: what MGE's score is scaled by.
docs/data.md quotes the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raydal.data import get_reader  # noqa: E402
from raydal.data.synth import synthesize  # noqa: E402
from raydal.data.synth.painter import paint, sample_grades  # noqa: E402


def correlations(images: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """images uint8 [N, H, W, 3], counts int [N] -> {statistic: Spearman rho with counts}."""
    import torch
    from scipy.stats import spearmanr

    from raydal.models.backbones import smallcnn

    x = images.astype(np.float64)
    stats = {
        "brightness": x.mean((1, 2, 3)),
        "pixel std": x.std((1, 2, 3)),
        "gradient energy": (np.diff(x, axis=1) ** 2).mean((1, 2, 3)) + (np.diff(x, axis=2) ** 2).mean((1, 2, 3)),
    }
    batch = torch.tensor(images).permute(0, 3, 1, 2).float() / 255 - 0.5
    for init in range(3):
        torch.manual_seed(init)
        with torch.no_grad():
            _, h = smallcnn(3).eval()(batch)
        stats[f"||h||, random smallcnn #{init}"] = h.norm(dim=1).numpy()
    return {name: float(spearmanr(counts, v).statistic) for name, v in stats.items()}


def trained_norms(checkpoint: Path, shards: Path) -> None:
    """Print the Spearman rho of a trained model's ‖h‖ with the label count over the pool split."""
    import torch
    from scipy.stats import spearmanr

    from raydal.data.shards import load_manifest, read_split
    from raydal.models import load_checkpoint
    from raydal.models.preprocess import preprocess

    pool = read_split(load_manifest(shards), "pool")
    model = load_checkpoint(checkpoint)
    with torch.no_grad():
        h = torch.cat(
            [model(preprocess(pool["image"][i : i + 64])).embeddings for i in range(0, len(pool["image"]), 64)]
        )
    counts = pool["labels"].sum(1)
    norms = h.norm(dim=1).numpy()
    rho = float(spearmanr(counts, norms).statistic)
    print(
        f"{len(counts)} pool images, {counts.mean():.2f} labels per image; trained ‖h‖ ({checkpoint}): "
        f"coefficient of variation {norms.std() / norms.mean():.3f}, Spearman rho with the label count {rho:+.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibrated", action="store_true", help="paint with the calibrated difficulty (CALIBRATED)")
    p.add_argument("--checkpoint", type=Path, help="a trained model's checkpoint folder (with --shards)")
    p.add_argument("--shards", type=Path, help="prepared shards whose pool split --checkpoint is measured on")
    args = p.parse_args(argv)
    if args.checkpoint or args.shards:
        if not (args.checkpoint and args.shards):
            p.error("--checkpoint and --shards go together")
        trained_norms(args.checkpoint, args.shards)
        return 0
    from raydal.data.synth.painter import Knobs
    from raydal.data.synth.ucmerced import CALIBRATED

    settings = CALIBRATED if args.calibrated else {}
    difficulty = settings.get("difficulty", 0.3)
    look = dataclasses.replace(Knobs.of(difficulty), **{k: v for k, v in settings.items() if k != "difficulty"})
    warnings.filterwarnings("ignore", message=".*georeference.*")
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize("ucmerced", Path(tmp) / "archive", n=args.n, size=args.size, seed=args.seed, **settings)
        reader = get_reader("ucmerced", root)
        index = reader.index()
        square = [i for i, path in enumerate(index.paths) if reader.load_image(path).shape[:2] == (args.size,) * 2]
        images = np.stack([reader.load_image(index.paths[i]) for i in square])
    labels = index.labels[square]
    scenes = np.array([reader.scenes.index(index.ids[i].rstrip("0123456789")) for i in square])
    counts = labels.sum(1)
    print(
        f"{len(square)} images of {args.size} px (the odd-sized ones left out), "
        f"{counts.mean():.2f} labels per image; Spearman rho with the label count:"
    )
    rng = np.random.default_rng(args.seed)
    grades = sample_grades(labels, rng, difficulty, share=look.hard_share)
    one_slot = paint(labels, (args.size, args.size), 3, rng, difficulty, scenes, grades, 7, fill_grid=False, knobs=look)
    table = {"archive as generated": correlations(images, counts), "one slot per label": correlations(one_slot, counts)}
    for name in table["archive as generated"]:
        print(f"  {name:28s} " + "  ".join(f"{what}: {rho[name]:+.3f}" for what, rho in table.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
