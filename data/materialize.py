"""Materialise the default spans from the Chicago-taxi CSVs that ship inside the `tfx` wheel.

    python -m data.materialize [--spans-root data/spans]

span-1 <- tfx/components/testdata/external/csv/data.csv  (10,000 trips)
span-2 <- tfx/components/testdata/external/csv/data2.csv  (5,000 trips)
(tfx/examples/chicago_taxi_pipeline/data/simple/data.csv, 15,002 trips, stays where it is: see
SHIPPED_SAMPLE.)

Idempotent: a span that already exists is left untouched, so spans added later (by the span
generator or by served traffic) are never overwritten.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from data import spans_io

DEFAULT_SPANS_ROOT = Path(__file__).resolve().parent / "spans"
SHIPPED_SPANS = {
    1: "components/testdata/external/csv/data.csv",
    2: "components/testdata/external/csv/data2.csv",
}
# A third sample of the same feed (15,002 trips) that is not a span: schema/derive.py measures the
# natural rate of missing values on it too, and it holds real trips with empty pickup fields.
SHIPPED_SAMPLE = "examples/chicago_taxi_pipeline/data/simple/data.csv"


def shipped_csv(relative: str) -> Path:
    """Path of a CSV inside the installed tfx package."""
    spec = importlib.util.find_spec("tfx")  # locate without importing (importing tfx takes ~10 s)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("tfx is not installed: run `make setup` first")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.exists():
        raise FileNotFoundError(f"{relative} is not in the installed tfx package ({path})")
    return path


def materialize(spans_root: Path = DEFAULT_SPANS_ROOT) -> list[Path]:
    """Create the shipped spans that do not exist yet; return the files written."""
    written = []
    present = set(spans_io.existing_spans(spans_root))
    for span, relative in SHIPPED_SPANS.items():
        if span in present:
            continue
        rows = spans_io.read_rows(shipped_csv(relative))
        written.append(spans_io.write_span(spans_root, span, rows))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans-root", type=Path, default=DEFAULT_SPANS_ROOT)
    args = parser.parse_args()
    for path in materialize(args.spans_root):
        print(f"wrote {path}")
    print(f"spans in {args.spans_root}: {spans_io.existing_spans(args.spans_root)}")


if __name__ == "__main__":
    main()
