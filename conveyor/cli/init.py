"""`conveyor init DIR --from-csv FILE --label COLUMN`: a new pipeline project from a CSV file.

It writes, in DIR (pipeline/project.py has the layout): conveyor.toml, the contract inferred from
the data (schema/infer_contract.py), the rows split in order into spans, and the schema and
completeness floors derived from those spans alone (schema/derive.py, with the project's contract
active). Every input is checked before anything is written; the project is built in a folder
beside DIR, then renamed into place (or moved into an empty DIR), so a failure leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from conveyor.cli import common
from models.contract import Contract
from pipeline import project


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("init", help="make a pipeline project from a CSV file (docs/your-data.md)")
    parser.add_argument("dir", type=Path, metavar="DIR", help="a new or empty folder for the project")
    parser.add_argument("--from-csv", type=Path, required=True, metavar="FILE", help="the data: a CSV file with a header")
    parser.add_argument("--label", required=True, metavar="COLUMN", help="the column to predict: two values (binary) or 3 to 50 (multi-class)")
    parser.add_argument("--positive", metavar="VALUE", help="a two-valued label's value that counts as 1 (default: 1, true or yes "
                        "when one of the values, else the less frequent)")
    parser.add_argument("--spans", type=common.positive_int, default=2, metavar="N", help="split the rows, in order, into N spans (default 2)")
    parser.add_argument("--name", help="the model's name (default: DIR's name)")
    parser.set_defaults(func=init)


def init(args: argparse.Namespace) -> int:
    from schema import infer_contract

    target: Path = args.dir
    if target.exists() and not target.is_dir():
        raise common.CommandError(f"{target}: not a folder (name a new or empty folder for the project)")
    if target.is_dir() and any(target.iterdir()):
        raise common.CommandError(f"{target}: not empty (name a new or empty folder for the project)")
    name = args.name or target.resolve().name
    if not re.fullmatch(project.NAME_PATTERN, name):
        named = f"--name {name}" if args.name else f"{target}: its name {name!r}"
        raise common.CommandError(f"{named}: expected a model name of letters, digits, '_', '.', '-'"
                                  + ("" if args.name else " (give --name)"))
    flags = {"from_csv": f"--from-csv {args.from_csv}", "label": f"--label {args.label}",
             "positive": f"--positive {args.positive}", "spans": f"--spans {args.spans}"}
    try:
        table = infer_contract.read_csv(args.from_csv)
        contract_text = infer_contract.infer(table, args.label, args.positive, name)
        spans = infer_contract.split(table.rows, args.spans)
    except infer_contract.InferenceError as exc:
        raise common.CommandError(f"{flags[exc.field]}: {exc}") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.init-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become the project's
    except OSError as exc:
        raise common.CommandError(f"{target}: cannot create it ({exc.strerror or exc})") from None
    try:
        from conveyor.local.progress import quiet_command

        with quiet_command(stage / project.HOME / "logs" / "init.log"):
            contract = _write(stage, name, contract_text, spans)
        if target.is_dir():  # an empty folder (perhaps the current one) stays, and gets the project's files
            for entry in stage.iterdir():
                os.replace(entry, target / entry.name)
        else:
            os.replace(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(_next_steps(target, contract, [len(s) for s in spans], table.written))
    return 0


def _write(root: Path, name: str, contract_text: str, spans: list[list[dict[str, str]]]) -> Contract:
    """The project's files under `root`; returns its contract (parsed back: the check of the text)."""
    from tfx.utils import io_utils

    from data import spans_io
    from models import features
    from schema import derive

    (root / project.MARKER).write_text(project.marker_text(name))
    (root / project.CONTRACT).write_text(contract_text)
    contract = features.activate(root / project.CONTRACT)
    spans_root = root / project.SPANS
    for number, rows in enumerate(spans, start=1):
        spans_io.write_span(spans_root, number, rows)
    scratch = root / "tmp"  # TFDV's and Beam's temp files stay inside the project, and go
    scratch.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        completeness = derive.derive_completeness(spans_root)
        schema = derive.derive(spans_root, completeness)
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(scratch)
    (root / project.SCHEMA).parent.mkdir(parents=True, exist_ok=True)
    io_utils.write_pbtxt_file(str(root / project.SCHEMA), schema)
    (root / project.COMPLETENESS).write_text(json.dumps(completeness, indent=2) + "\n")
    return contract


def _next_steps(target: Path, contract: Contract, sizes: list[int], renamed: dict[str, str]) -> str:
    label = contract.label
    rule = (f"{len(label.classes)} classes of {label.column}" if label.multiclass
            else f"{label.column} = {label.positive!r}" if label.positive else f"{label.column} = 1")
    return "\n".join([
        f"conveyor init: project {contract.model_name} in {target}",
        f"  {project.CONTRACT:<26} the feature contract: {len(contract.columns)} columns, {len(contract.features)} model features, "
        f"label {label.name} ({rule}); review it (docs/your-data.md)",
        *([f"  {'':<26} columns named as features (requests and labels use these names): "
           + ", ".join(f"{text!r} -> {name}" for name, text in renamed.items())] if renamed else []),
        f"  {project.SPANS + '/':<26} {sum(sizes):,} rows in {len(sizes)} spans ({', '.join(f'{n:,}' for n in sizes)})",
        f"  {'schema/':<26} schema.pbtxt and completeness.json, derived from these spans",
        f"  {project.MARKER:<26} marks the project: commands run inside it use these files and {project.HOME}/",
        "next:",
        f"  cd {target}",
        "  conveyor run        # validate each span, train, evaluate, push",
        f"  conveyor serve      # POST {{\"instances\": [...]}} to http://127.0.0.1:8501/v1/models/{contract.model_name}:predict",
        f"  # outcomes: {project.HOME}/labels/*.jsonl lines {{\"request_id\", \"index\", \"{label.column}\"}}",
        "  conveyor monitor    # skew, drift and live accuracy of the served traffic",
        "  conveyor ct tick    # one continuous-training decision (conveyor ct watch: in a loop)",
    ])
