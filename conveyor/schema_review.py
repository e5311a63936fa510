"""What `conveyor schema diff/accept/reject` decide on: a blocked span under the home's newest schema
version.

The span's newest DataGate execution is found in ML Metadata with the inputs it recorded (its
statistics, the previous validated span's, its parameters). The span rules are applied again to
them (pipeline/components/data_gate.py check_span), with TFDV's anomalies computed against the
schema the next run would import (schema/versions.py), and the problems split in two: the schema
matters, which schema/changes.py turns into the smallest change, and the rest (a broken feed, a
row-count collapse, empty cells, a malformed file), which no schema version fixes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format

from data.spans_io import UPSTREAM
from pipeline import statistics_layout, validation
from pipeline.configs import PipelineConfig
from schema import changes as changes_lib
from schema import versions

# DataGate problems a schema change resolves (the rest are not schema matters).
SCHEMA_KINDS = (validation.OUT_OF_DOMAIN, validation.SCHEMA_ANOMALY)
# A span whose files are malformed gets no proposal at all: a repeated header read as data, say,
# would otherwise propose the column names as new domain values.
MALFORMED = (validation.ROWS_CHANGED, validation.EMPTY_SPAN, validation.HEADER_REPEATED, validation.MISSING_COLUMN,
             validation.UNKNOWN_COLUMN)


class ReviewError(ValueError):
    """The span cannot be reviewed (unknown, not blocked, no runs): one line naming it."""


@dataclass(frozen=True)
class Review:
    span: int
    run_id: str | None  # the run whose DataGate blocked it
    version: versions.SchemaVersion  # what the next run imports
    changes: list[changes_lib.Change]
    not_schema: list[str]  # problems no schema change fixes, one line each
    rejection: versions.Rejection | None

    def schema_text(self) -> str:
        """The current version with the changes made."""
        import tensorflow_data_validation as tfdv

        return text_format.MessageToString(changes_lib.apply(tfdv.load_schema_text(self.version.file), self.changes))

    def lines(self) -> list[str]:
        """The diff as `conveyor schema diff` prints it."""
        head = f"span {self.span} (blocked in run {self.run_id}) against schema {self.version.describe()}:"
        out = [head]
        if self.changes:
            plural = "s" if len(self.changes) > 1 else ""
            out.append(f"{len(self.changes)} schema change{plural} would accept it (feature: what: from -> to (rows of the span that need it)):")
            out += [c.line() for c in self.changes]
        if self.not_schema:
            out.append("not schema changes (no schema version accepts these; the span stays blocked):")
            out += [f"  {line}" for line in self.not_schema]
        if self.rejection is not None:
            r = self.rejection
            out.append(f"rejected by {r.by} at {r.at} (against version {r.version}): {r.reason!r}; the span keeps blocking")
        elif self.changes and not self.not_schema:
            out.append(f"accept: conveyor schema accept --span {self.span} --reason TEXT (the next conveyor run or ct tick takes span {self.span} again)")
        return out


def blocked_gate(config: PipelineConfig, span: int) -> tuple[Any, str | None]:
    """The newest DataGate execution on upstream span `span` and its run, if it blocked the span;
    else ReviewError (no runs, span never gated, or it passed). Reads ML Metadata only."""
    from metadata import connection, runs, spans

    if not connection.store_exists(config):
        raise ReviewError(f"{config.home}: no run is recorded in this home yet (`conveyor run` first)")
    gates = spans.gate_executions(config, UPSTREAM)
    if span not in gates:
        known = ", ".join(map(str, sorted(gates))) or "none"
        raise ReviewError(f"--span {span}: no run of this home has gated span {span} (spans gated: {known})")
    gate = gates[span]
    store = connection.open_store(connection.connection_config(config))
    run_id = runs.run_of(store, gate.execution.id)
    if gate.state in ("COMPLETE", "CACHED"):
        raise ReviewError(f"--span {span}: not blocked (it passed DataGate in run {run_id}); nothing to change")
    if gate.state != "FAILED":
        raise ReviewError(f"--span {span}: its DataGate in run {run_id} did not finish ({gate.state}): `conveyor run --span {span}` again")
    return gate, run_id


def review(config: PipelineConfig, span: int) -> Review:
    """The review of upstream span `span` of this home; ReviewError if there is nothing to review."""
    gate, run_id = blocked_gate(config, span)
    version = versions.current(config.home, config.schema_path)
    found = _check(gate, span, version)
    if not found.changes and found.not_schema:
        raise ReviewError(f"--span {span}: not blocked by the schema but by what no schema change fixes: {'; '.join(found.not_schema)}")
    if not found.changes:
        from metadata import runs

        gated_with = runs.custom_property(gate.inputs["schema"][0], versions.PROPERTY_PREFIX + "version") or 1
        if version.version > gated_with:  # blocked under an older version, which a later one widened
            raise ReviewError(f"--span {span}: schema {version.describe()} accepts it; `conveyor run --span {span}` ingests it")
        raise ReviewError(f"--span {span}: not blocked by the schema (DataGate stopped it for drift under the block policy, "
                          f"or failed: see `conveyor runs`)")
    return Review(span, run_id, version, found.changes, found.not_schema, versions.rejection(config.home, span))


@dataclass(frozen=True)
class _Found:
    changes: list[changes_lib.Change]
    not_schema: list[str]


def _recorded(gate, name: str) -> Any:
    """A DataGate parameter as the execution recorded it; a gate run before the parameter existed: today's default."""
    from metadata import runs

    found = runs.exec_property(gate, name)
    return getattr(PipelineConfig(), name) if found is None else found


def _check(gate, span: int, version: versions.SchemaVersion) -> _Found:
    """The span rules and the schema's anomalies on the gate's recorded inputs, under `version`."""
    import tensorflow_data_validation as tfdv

    from data import span_audit
    from metadata import runs
    from pipeline import anomalies
    from pipeline.components import data_gate

    statistics = gate.inputs["statistics"][0]
    split_names = statistics.properties["split_names"].string_value
    splits = json.loads(split_names)
    stats = [tfdv.load_stats_binary(statistics_layout.split_file(statistics.uri, s)) for s in splits]
    schema = tfdv.load_schema_text(version.file)
    found = [a for split, s in zip(splits, stats) for a in anomalies.from_proto(split, tfdv.validate_statistics(s, schema))]
    previous = gate.inputs.get("previous_statistics", [])
    baseline = None
    if previous:
        p = previous[0]
        recorded = p.custom_properties[data_gate.PLAUSIBILITY_PROPERTY].string_value if data_gate.PLAUSIBILITY_PROPERTY in p.custom_properties else ""
        baseline = data_gate.Baseline(p.uri, p.properties["split_names"].string_value, runs.span_of(p), recorded or "{}")
    try:
        checked = data_gate.check_span(
            span,
            runs.exec_property(gate, "input_pattern"),
            data_gate.Stored(statistics.uri, split_names),
            found,
            version.file,
            baseline,
            json.dumps(runs.exec_property(gate, "completeness")),
            float(runs.exec_property(gate, "min_rows_ratio")),
            float(runs.exec_property(gate, "broken_feed_factor")),
            float(_recorded(gate, "broken_meaning_jsd")),
            json.dumps(runs.exec_property(gate, "drift_thresholds")),
        )
    except span_audit.AuditError as exc:
        return _Found([], [f"span: {exc}"])
    outside = {name: column.out_of_domain.rows for name, column in checked.audit.columns.items()}
    lines = [p.line().strip().removeprefix("- ") for p in checked.problems]
    if any(p.kind in MALFORMED for p in checked.problems):  # its statistics describe the damage, not the data
        return _Found([], lines)
    proposal = changes_lib.propose(schema, stats, outside)
    kinds = {line.split(": ", 1)[0] for line in proposal.not_schema}
    return _Found(proposal.changes, [line for p, line in zip(checked.problems, lines) if p.kind not in SCHEMA_KINDS or p.feature in kinds])
