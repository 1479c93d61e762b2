"""The README's pictures: small copies of three figures of a finished study.

    python -m featlab.pictures --config config.yaml --out docs/pictures

reads the figures the workflow drew (`Study.pictures`: a FeatInv grid, a steerable-lens strip and
the cosine figure), shrinks each to at most `--width` pixels across with Pillow and writes them as
`{name}.png` under `--out`. It computes nothing: run the study first (`make demo`).
"""

import argparse
from pathlib import Path

import yaml
from PIL import Image
from snakemake.utils import validate

from featlab.io import atomic_path
from featlab.study import Study

REPO = Path(__file__).resolve().parents[2]


def shrink(source: Path, target: Path, width: int) -> tuple[int, int]:
    """Copy a PNG at most `width` pixels wide (aspect kept, Lanczos); return its size."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            height = round(image.height * width / image.width)
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        with atomic_path(target) as temporary:
            image.save(temporary, format="PNG", optimize=True)
        return image.size


def make_pictures(study: Study, results: Path, out: Path, width: int) -> dict[str, Path]:
    """Shrink each of the study's pictures from `results` (the folder holding results/{study}) to
    `out`/{name}.png; a missing figure stops before anything is written."""
    sources = {name: results / path for name, path in study.pictures().items()}
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"missing figures {missing}: run the study first (make demo)")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, source in sources.items():
        written[name] = out / f"{name}.png"
        size = shrink(source, written[name], width)
        print(f"{written[name]}  {size[0]}x{size[1]}  from {source.relative_to(results)}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="the study's config file")
    parser.add_argument("--out", default="docs/pictures", help="folder of the pictures")
    parser.add_argument("--width", type=int, default=720, help="largest width in pixels")
    parser.add_argument("--results", default=".", help="the folder holding results/{study}")
    args = parser.parse_args()
    if args.width < 64:
        raise SystemExit(f"--width {args.width}: at least 64 pixels")
    config = yaml.safe_load(Path(args.config).read_text())
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    study = Study.plan(config, REPO, main_process=False)
    try:
        make_pictures(study, Path(args.results), Path(args.out), args.width)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
