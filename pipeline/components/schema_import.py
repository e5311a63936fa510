"""SchemaImport: TFX's ImportSchemaGen with the schema version it imports (schema/versions.py).

It copies `schema_file` into the run's Schema artifact as ImportSchemaGen does, after checking the
file still holds the version's content (its sha256), and stamps the artifact with the version's
record as custom properties (schema_version, schema_reason and, for an accepted version,
schema_span, schema_accepted_by, schema_accepted_at), which `conveyor lineage` reads back from the
schema a model was trained and validated with. The record is an execution property, so the cache
key follows the version: an unchanged version stays cached, an edited curated file or a newly
accepted version re-runs the import and what depends on the schema.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from tfx import types
from tfx.components.schema_gen.import_schema_gen import executor as import_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

SCHEMA_FILE_KEY = "schema_file"  # as ImportSchemaGen names it (lineage shows it)
VERSION_KEY = "schema_version"


class SchemaVersionError(RuntimeError):
    """The schema file no longer holds the version that was accepted."""


class SchemaImportSpec(types.ComponentSpec):
    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        SCHEMA_FILE_KEY: ExecutionParameter(type=str), VERSION_KEY: ExecutionParameter(type=str)
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {}
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {"schema": ChannelParameter(type=standard_artifacts.Schema)}


class Executor(import_executor.Executor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        source = exec_properties[SCHEMA_FILE_KEY]
        record = json.loads(exec_properties[VERSION_KEY])
        with fileio.open(source, "rb") as handle:
            found = hashlib.sha256(handle.read()).hexdigest()
        if found != record["schema_sha256"]:
            raise SchemaVersionError(
                f"{source} is not schema version {record['schema_version']} (sha256 {found[:12]}..., expected "
                f"{record['schema_sha256'][:12]}...): it changed after the run was built (see docs/pipeline.md, 'Schema changes')"
            )
        super().Do(input_dict, output_dict, exec_properties)
        schema = artifact_utils.get_single_instance(output_dict["schema"])
        for key, value in record.items():
            if isinstance(value, int):
                schema.set_int_custom_property(key, value)
            else:
                schema.set_string_custom_property(key, str(value))


class SchemaImport(base_component.BaseComponent):
    """Import `schema_file`, schema version `version` (its custom properties, schema/versions.py)."""

    SPEC_CLASS = SchemaImportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, schema_file: str, version: dict[str, str | int]):
        spec = SchemaImportSpec(
            schema_file=schema_file,
            schema_version=json.dumps(version, sort_keys=True),
            schema=types.Channel(type=standard_artifacts.Schema),
        )
        super().__init__(spec=spec)
