"""The table of every diffusers pipeline whose denoiser is a U-Net, and how DeepCache serves it, from the battery.

    python scripts/pipeline_table.py          # runs the battery (about 40 s on CPU), rewrites docs/pipelines.md
    python scripts/pipeline_table.py --check  # exits 1 if the page is not what the battery gives

Each pipeline is built tiny and offline (``deepcache.testing.zoo``), run plain, with the helper at
interval 3, branch 0, and after disabling it (``deepcache.testing.battery``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from tqdm.auto import tqdm

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache.testing.battery import CASES, check_pipeline, pipeline_table

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pipelines.md"
START, END = "<!-- battery table: scripts/pipeline_table.py writes it -->\n", "<!-- end of battery table -->\n"


def battery_table() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FewStepsWarning and diffusers' deprecations, on 6-step tiny pipelines
        results = [check_pipeline(case) for case in tqdm(CASES.values(), desc="pipelines", unit="pipeline")]
    return pipeline_table(results, CASES)


def replace_table(page: str, table: str) -> str:
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}{table}{END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with docs/pipelines.md instead of writing it")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    page = args.page.read_text()
    updated = replace_table(page, battery_table())
    if args.check:
        if updated != page:
            print(f"{args.page}'s table differs from the battery's: run python scripts/pipeline_table.py")
            return 1
        print(f"{args.page}'s table is the battery's.")
        return 0
    args.page.write_text(updated)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
