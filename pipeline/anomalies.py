"""Reading ExampleValidator output and describing anomalies for people."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from tensorflow_metadata.proto.v0 import anomalies_pb2

from data import files

ANOMALIES_FILE = "SchemaDiff.pb"


@dataclass(frozen=True)
class Anomaly:
    split: str
    feature: str
    kind: str  # e.g. ENUM_TYPE_UNEXPECTED_STRING_VALUES
    description: str

    def __str__(self) -> str:
        return f"[{self.split}] {self.feature}: {self.kind}: {self.description}"


def from_proto(split: str, proto: anomalies_pb2.Anomalies) -> list[Anomaly]:
    found = []
    for feature, info in sorted(proto.anomaly_info.items()):
        kinds = sorted(
            anomalies_pb2.AnomalyInfo.Type.Name(reason.type) for reason in info.reason
        ) or ["UNKNOWN"]
        found.append(Anomaly(split, feature, ",".join(kinds), info.description or info.short_description))
    if proto.HasField("dataset_anomaly_info"):
        info = proto.dataset_anomaly_info
        kinds = sorted(anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason) or ["UNKNOWN"]
        found.append(Anomaly(split, "<dataset>", ",".join(kinds), info.description))
    return found


def load_file(path: str) -> anomalies_pb2.Anomalies:
    proto = anomalies_pb2.Anomalies()
    proto.ParseFromString(files.read_bytes(path))
    return proto


def load(uri: str, split: str) -> anomalies_pb2.Anomalies:
    """The TFDV Anomalies of one split of an ExampleAnomalies artifact directory."""
    return load_file(os.path.join(uri, f"Split-{split}", ANOMALIES_FILE))


def read(uri: str, split_names: str) -> list[Anomaly]:
    """All anomalies in an ExampleAnomalies artifact directory, every split (`split_names`: the
    artifact's property, a JSON list)."""
    found = []
    for split in json.loads(split_names) if split_names else []:
        found.extend(from_proto(split, load(uri, split)))
    return found


def report(anomalies: list[Anomaly]) -> str:
    return "\n".join(f"  - {a}" for a in anomalies)
