"""A second dataset, unlike the taxi's: customers of a subscription service and whether they churned.

Seeded and generated here (nothing is downloaded): ints, floats, strings, an id, a constant, a
postcode, empty cells in one column, and a "yes"/"no" label that depends on the features (a model
learns it: the true churn probability ranks the rows with AUC ~0.85).
"""
from __future__ import annotations

import csv
import math
import random
from pathlib import Path

COLUMNS = ("customer_id", "country", "age", "tenure_months", "monthly_charges", "total_spend", "support_calls",
           "plan", "region", "payment", "postcode", "churned")
LABEL = "churned"
PLANS = {"basic": 0.8, "plus": 0.0, "pro": -0.9}
REGIONS = ("north", "south", "east", "west")
PAYMENTS = {"card": 0.0, "invoice": 0.5, "transfer": -0.2}


def churn_probability(row: dict[str, object]) -> float:
    z = (0.2 - 0.045 * float(row["tenure_months"]) + 0.025 * (float(row["monthly_charges"]) - 70)  # type: ignore[arg-type]
         + 0.5 * (int(row["support_calls"]) - 2) + PLANS[str(row["plan"])] + PAYMENTS[str(row["payment"])])  # type: ignore[call-overload]
    return 1 / (1 + math.exp(-1.6 * z))


def rows(count: int = 3000, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    postcodes = [rng.randrange(10000, 99999) for _ in range(150)]
    made = []
    for i in range(count):
        tenure = rng.randrange(0, 73)
        charges = round(rng.uniform(20, 120), 2)
        row: dict[str, object] = {
            "customer_id": 500000 + 7 * i,
            "country": "NL",
            "age": rng.randrange(18, 81),
            "tenure_months": tenure,
            "monthly_charges": charges,
            "total_spend": "" if rng.random() < 0.08 else round(charges * tenure * rng.uniform(0.3, 1.0) + rng.expovariate(0.05), 2),
            "support_calls": min(9, int(rng.expovariate(0.6))),
            "plan": rng.choices(list(PLANS), weights=(5, 3, 2))[0],
            "region": rng.choice(REGIONS),
            "payment": rng.choice(list(PAYMENTS)),
            "postcode": rng.choice(postcodes),
        }
        row[LABEL] = "yes" if rng.random() < churn_probability(row) else "no"
        made.append(row)
    return made


def write(path: Path, table: list[dict[str, object]] | None = None) -> Path:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows() if table is None else table)
    return path
