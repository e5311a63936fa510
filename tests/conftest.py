"""Shared fixtures. Beam runs in_memory and gRPC fork support is off (as TFX's own tests do)."""
from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from data import materialize, spans_io  # noqa: E402


@pytest.fixture(scope="session")
def shipped_spans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default spans, materialised from the installed tfx wheel into a temp folder."""
    root = tmp_path_factory.mktemp("spans")
    materialize.materialize(root)
    return root


@pytest.fixture(scope="session")
def shipped_rows(shipped_spans: Path) -> list[dict[str, str]]:
    return spans_io.read_rows(spans_io.span_dir(shipped_spans, 1) / spans_io.SPAN_FILE)
