"""`make bench-cbpe`: does the estimated accuracy (CBPE, monitoring/estimate.py) follow the realized one?

    python -m benchmarks.cbpe_check [--home HOME] [--rows 2000] [--seed 0] [--workdir DIR]

The served model is the one `conveyor run` pushes from the two shipped spans (a new home under
--workdir, about 2 minutes), or the serving version of --home. Served traffic comes from the
feed's third shipped sample (15,002 real trips, disjoint from the spans: data/materialize.py
SHIPPED_SAMPLE), in windows of up to --rows trips: an unshifted random sample, then windows of
one part of the traffic (a payment mix, an hour band, months, long trips), and one concept shift
(the same trips, credit-card tips cut to 5 %: generator problem label_shift) that CBPE cannot see.
Each window is answered by the model, written by the request-log writer with its labels in the
labels format, into a scratch log (the home's own log is not touched), and `conveyor monitor`'s
job reads it: estimated accuracy (with the chance sd of the realized one) against the realized,
as the monitor reports them.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from data import generator, materialize, spans_io

CONVEYOR = Path(sys.executable).parent / "conveyor"
END = datetime(2026, 1, 31, tzinfo=timezone.utc)
Row = dict[str, str]

WINDOWS: dict[str, Callable[[Row], bool]] = {
    "unshifted (random trips)": lambda r: True,
    "payment mix: credit card only": lambda r: r["payment_type"] == "Credit Card",
    "payment mix: cash only": lambda r: r["payment_type"] == "Cash",
    "hour band: 0-5 h": lambda r: r["trip_start_hour"] != "" and int(r["trip_start_hour"]) < 6,
    "months: Dec-Feb": lambda r: r["trip_start_month"] in ("12", "1", "2"),
    "long trips: over 5 miles": lambda r: r["trip_miles"] != "" and float(r["trip_miles"]) > 5,
    "card trips, 18-23 h": lambda r: r["payment_type"] == "Credit Card" and r["trip_start_hour"] != ""
    and int(r["trip_start_hour"]) >= 18,
}
CONCEPT_SHIFT = "concept shift: card tips cut to 5 %"


def _home(workdir: Path) -> Path:
    home, spans = workdir / "home", workdir / "spans"
    materialize.materialize(spans)
    subprocess.run([str(CONVEYOR), "run", "--home", str(home), "--spans-root", str(spans)], check=True, stdout=subprocess.DEVNULL)
    return home


def _windows(pool: list[Row], rows: int, seed: int) -> dict[str, list[Row]]:
    found = {}
    for k, (name, keep) in enumerate(WINDOWS.items()):
        chosen = [dict(r) for r in pool if keep(r)]
        random.Random(seed + k).shuffle(chosen)
        found[name] = chosen[:rows]
    shifted = [dict(r) for r in found[next(iter(WINDOWS))]]
    generator.PROBLEMS["label_shift"](shifted, random.Random(seed))
    found[CONCEPT_SHIFT] = shifted
    return found


def _serve(config, model, rules, rows: list[Row], name: str, when: datetime, log_root: Path, labels_root: Path) -> None:
    """Log the model's answers to `rows` at `when` and deliver their labels (rows a server would refuse, and
    rows without tips, are left out)."""
    from models.instances import InstanceError, from_row, parse_instance
    from monitoring import labels
    from serving import request_log

    kept = []
    for row in rows:
        try:
            kept.append((parse_instance(from_row(row), rules), row))
        except InstanceError:
            continue
    kept = [(i, r) for i, r in kept if r["tips"] != ""]
    outputs = model.predict([i for i, _ in kept])
    records = [
        request_log.record(f"{name}-{n}", 0, when, config.model_name, model.version, inst.features, out)
        for n, ((inst, _), out) in enumerate(zip(kept, outputs))
    ]
    log = request_log.RequestLog(log_root)
    log.append(records, when)
    log.close()
    labels.write(labels_root / f"{when:%Y%m%d}.jsonl", [(r["request_id"], 0, float(row["tips"])) for r, (_, row) in zip(records, kept)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="a home with a pushed model (default: a new one from the shipped spans)")
    parser.add_argument("--rows", type=int, default=2000, help="trips per window (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where the scratch home, log and labels go (default: a new temp folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cbpe-check-"))
    home = args.home or _home(workdir)

    from models.instances import FeatureRules
    from models.saved_model import LoadedModel
    from monitoring import job
    from pipeline import configs, versions

    config = configs.load(home=home)
    version = versions.serving_version(config.serving_root)
    if version is None:
        print(f"cbpe_check: no pushed model under {config.serving_root}", file=sys.stderr)
        return 2
    model = LoadedModel.load(config.serving_root / version, version)
    rules = FeatureRules.from_schema(config.schema_path)
    pool = spans_io.read_rows(materialize.shipped_csv(materialize.SHIPPED_SAMPLE))
    log_root, labels_root = workdir / "request_log", workdir / "labels"
    print(f"model version {version} of {home}; windows of up to {args.rows} trips from {materialize.SHIPPED_SAMPLE}, seed {args.seed}")
    header = f"{'window':38} {'n':>5} {'estimated':>9} {'± chance':>8} {'realized':>8} {'diff':>7} {'est AUC':>7} {'AUC':>6}  estimate"
    print(header)
    print("-" * len(header))
    for k, (name, rows) in enumerate(_windows(pool, args.rows, args.seed).items()):
        when = END - timedelta(days=k, hours=1)
        _serve(config, model, rules, rows, f"w{k}", when, log_root, labels_root)
        out = Path(workdir) / "monitoring" / f"w{k}"
        data = job.run(config, end=when + timedelta(hours=1), hours=1, log_root=log_root, labels_root=labels_root, out_dir=out).data
        e, m = data["estimated"], data["live_metrics"][version]
        diff = "-" if e["accuracy"] is None or m["accuracy"] is None else f"{e['accuracy'] - m['accuracy']:+.3f}"
        figure = lambda v, spec=".3f": "n/a" if v is None else format(v, spec)  # noqa: E731
        trust = e["state"] + (f": {e['reasons'][0]}" if e["state"] != "trusted" and e["reasons"] else "")
        print(f"{name:38} {e['predictions']:>5} {figure(e['accuracy']):>9} {figure(e['sd']):>8} {figure(m['accuracy']):>8} "
              f"{diff:>7} {figure(e['auc']):>7} {figure(m['auc']):>6}  {trust}")
    print(f"calibration: {e.get('calibration', '-')} on {e.get('eval_rows', '-')} eval rows; scratch: {workdir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
