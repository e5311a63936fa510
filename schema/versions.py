"""Schema versions of a home: the curated schema (version 1) and the changes people accepted since.

    <home>/schema/versions/0002.pbtxt     version 2's schema
    <home>/schema/versions/0002.json      its record: version, parent, span, changes, reason, by, at, sha256
    <home>/schema/rejections/span-7.json  a refused change: span, the version it was refused against,
                                          changes, reason, by, at

Version 1 is the curated file itself (`schema/schema.pbtxt` of the checkout or the project), so a
fresh home starts from it. A version exists once its record does: `accept` writes the schema, then
the record, each to a temporary file renamed into place, so a crash at any point leaves the old
newest version or the new one, never a torn file. Callers hold the home's writer lock
(pipeline/home_lock.py). Runs import the newest version (pipeline/pipeline.py); its record becomes
custom properties of the Schema artifact, which lineage reads back.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from data import spans_io

VERSIONS_DIR = "schema/versions"
REJECTIONS_DIR = "schema/rejections"
CURATED_REASON = "the curated schema"
PROPERTY_PREFIX = "schema_"  # custom properties of the imported Schema artifact: schema_version, ...


class VersionError(ValueError):
    """A version file that no longer matches its record; the message names it."""


@dataclass(frozen=True)
class SchemaVersion:
    version: int
    file: str  # the schema's path
    sha256: str
    reason: str = CURATED_REASON
    span: int | None = None  # the span whose acceptance made it (None: the curated version)
    parent: int | None = None
    by: str = ""
    at: str = ""  # UTC, ISO 8601
    changes: list[dict[str, Any]] = field(default_factory=list)  # schema/changes.py Change.as_dict()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def properties(self) -> dict[str, str | int]:
        """What the run's Schema artifact carries (custom properties, prefixed `schema_`)."""
        found: dict[str, str | int] = {"version": self.version, "reason": self.reason, "sha256": self.sha256}
        if self.span is not None:
            found.update(span=self.span, accepted_by=self.by, accepted_at=self.at)
        return {PROPERTY_PREFIX + key: value for key, value in found.items()}

    def describe(self) -> str:
        return described(self.properties())


def described(properties: Mapping[str, Any]) -> str:
    """'version 2 (span 7, accepted by ana at ...: "reason")' or 'version 1 (the curated schema)',
    from a version's properties (as a Schema artifact carries them)."""
    found = {k.removeprefix(PROPERTY_PREFIX): v for k, v in properties.items() if k.startswith(PROPERTY_PREFIX)}
    if "version" not in found:
        return "version not recorded (imported before schema versions)"
    if "span" not in found:
        return f"version {found['version']} ({found['reason']})"
    return f"version {found['version']} (span {found['span']}, accepted by {found['accepted_by']} at {found['accepted_at']}: {found['reason']!r})"


def change_lines(home: Path, curated_file: Path, version: int) -> list[str]:
    """Each change from the curated schema up to `version`, with the span that caused it and why."""
    out = []
    for v in history(home, curated_file)[1:]:
        if v.version <= version:
            out += [f"{line.strip()}  [version {v.version}, span {v.span}: {v.reason!r}]"
                    for line in (changes_line(c) for c in v.changes)]
    return out


def changes_line(change: dict[str, Any]) -> str:
    from schema.changes import Change

    return Change.from_dict(change).line()


def digest(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def curated(curated_file: Path) -> SchemaVersion:
    return SchemaVersion(1, str(curated_file), digest(curated_file))


def _versions_dir(home: Path) -> Path:
    return home / VERSIONS_DIR


def accepted(home: Path) -> list[SchemaVersion]:
    """The accepted versions (2, 3, ...), oldest first, each checked against its file."""
    folder = _versions_dir(home)
    found = []
    for record in sorted(folder.glob("[0-9][0-9][0-9][0-9].json")) if folder.is_dir() else []:
        version = SchemaVersion(**json.loads(record.read_text()))
        if not Path(version.file).is_file() or digest(version.file) != version.sha256:
            raise VersionError(f"{version.file}: schema version {version.version} no longer holds what was accepted "
                               f"(its record {record} names sha256 {version.sha256[:12]}...)")
        found.append(version)
    return found


def history(home: Path, curated_file: Path) -> list[SchemaVersion]:
    """Every version of this home, version 1 (the curated file) first."""
    return [curated(curated_file), *accepted(home)]


def current(home: Path, curated_file: Path) -> SchemaVersion:
    """The version runs of this home import: the newest accepted one, else the curated file."""
    return history(home, curated_file)[-1]


def in_force(home: Path, curated_file: Path) -> Path:
    """The schema file in force in a home: what its runs import, and whose domains and required
    features its server and monitoring apply (an accepted "Venmo" is no longer out of domain)."""
    return Path(current(home, curated_file).file)


def accept(home: Path, curated_file: Path, span: int, schema_text: str, changes: list[dict[str, Any]], reason: str, by: str) -> SchemaVersion:
    """Record `schema_text` as the next version, accepted for `span` (the caller holds the writer lock)."""
    parent = current(home, curated_file)
    number = parent.version + 1
    folder = _versions_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    schema_file = folder / f"{number:04d}.pbtxt"
    spans_io.write_text(schema_file, schema_text)
    version = SchemaVersion(number, str(schema_file), digest(schema_file), reason, span, parent.version, by, now(), changes)
    spans_io.write_text(folder / f"{number:04d}.json", version.to_json() + "\n")
    return version


@dataclass(frozen=True)
class Rejection:
    span: int
    version: int  # the schema version the change was refused against
    reason: str
    by: str
    at: str
    changes: list[dict[str, Any]] = field(default_factory=list)


def _rejection_file(home: Path, span: int) -> Path:
    return home / REJECTIONS_DIR / f"span-{span}.json"


def reject(home: Path, span: int, version: int, changes: list[dict[str, Any]], reason: str, by: str) -> Rejection:
    """Record that the change `span` needs was refused (the newest refusal of a span counts)."""
    rejection = Rejection(span, version, reason, by, now(), changes)
    path = _rejection_file(home, span)
    path.parent.mkdir(parents=True, exist_ok=True)
    spans_io.write_text(path, json.dumps(asdict(rejection), sort_keys=True) + "\n")
    return rejection


def rejection(home: Path, span: int) -> Rejection | None:
    path = _rejection_file(home, span)
    return Rejection(**json.loads(path.read_text())) if path.is_file() else None


def rejections(home: Path) -> list[Rejection]:
    folder = home / REJECTIONS_DIR
    found = [Rejection(**json.loads(p.read_text())) for p in folder.glob("span-*.json")] if folder.is_dir() else []
    return sorted(found, key=lambda r: r.at)
