"""A multi-class dataset for the tests: scikit-learn's bundled wine data (178 wines of 3 cultivars,
read from the installed package) enlarged by jittered copies, with a generated string column that
has empty cells, and its contract (the label kind "classes")."""
from __future__ import annotations

import csv
import random
from pathlib import Path

CULTIVARS = ["barolo", "grignolino", "barbera"]  # the three cultivars of the data, in its class order
# Of the data's 13 measurements (in its column order): these, the last one an int.
MEASURED = {0: "alcohol", 1: "malic_acid", 6: "flavanoids", 9: "color_intensity", 10: "hue", 12: "proline"}
CELLARS = ["north", "south", "east"]
COLUMNS = [*MEASURED.values(), "cellar", "cultivar"]

CONTRACT = """
name = "wine"
slices = ["cellar"]

[columns]
alcohol = {type = "float", min = 0.0}
malic_acid = {type = "float", min = 0.0}
flavanoids = {type = "float", min = 0.0}
color_intensity = {type = "float", min = 0.0}
hue = {type = "float", min = 0.0}
proline = {type = "int", min = 0}
cellar = {type = "string", optional = true}
cultivar = {type = "string"}

[features]
alcohol = {transform = "zscore"}
malic_acid = {transform = "zscore_log1p"}
flavanoids = {transform = "zscore"}
color_intensity = {transform = "zscore_log1p"}
hue = {transform = "zscore"}
proline = {transform = "quantile_buckets", buckets = 8}
cellar = {transform = "vocabulary", top_k = 10, oov = 1}

[label]
name = "cultivar_id"
kind = "classes"
column = "cultivar"
classes = ["barolo", "grignolino", "barbera"]

[drift]
string = 0.3
numeric = 0.2
"""


def rows(copies: int = 11, seed: int = 0) -> list[dict[str, object]]:
    """The wine rows, each `copies` times with every measurement jittered by up to +-3 %, shuffled."""
    import sklearn

    source = Path(sklearn.__file__).parent / "datasets" / "data" / "wine_data.csv"
    with open(source) as handle:
        data = list(csv.reader(handle))[1:]
    rng = random.Random(seed)
    found = []
    for _ in range(copies):
        for line in data:
            row: dict[str, object] = {}
            for index, name in MEASURED.items():
                value = float(line[index]) * rng.uniform(0.97, 1.03)
                row[name] = round(value) if name == "proline" else round(value, 3)
            row["cellar"] = "" if rng.random() < 0.1 else rng.choice(CELLARS)
            row["cultivar"] = CULTIVARS[int(line[-1])]
            found.append(row)
    rng.shuffle(found)
    return found


def write_spans(root: Path, data: list[dict[str, object]], spans: int = 2) -> list[Path]:
    """`data` split into `spans` consecutive spans, root/span-N/data.csv."""
    size = -(-len(data) // spans)
    written = []
    for n in range(spans):
        folder = root / f"span-{n + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "data.csv", "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(data[n * size : (n + 1) * size])
        written.append(folder)
    return written
