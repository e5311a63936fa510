"""When the supervisor replaces a worker that has served long enough (gunicorn's max_requests idea).

TensorFlow keeps ~2 MB for every folded version a worker swaps in, for the worker's life
(docs/serving.md), and nothing else gives it back. So a worker is replaced after
`worker_recycle_swaps` hot swaps, or once its resident memory grew `worker_recycle_growth_mb`
since it became ready (0 turns either off), and never before it has served MIN_AGE_POLLS polls.
The supervisor (serving/supervisor.py) starts the replacement first and waits until it has
loaded its model; only then does the old worker drain: it stops accepting (the replacement takes
the new connections of the shared socket), answers what it was asked, answers the next request of
each keep-alive connection with `Connection: close`, and its gRPC clients are sent away (GOAWAY)
to reconnect: no request fails.
"""
from __future__ import annotations

import os
from typing import Any

from pipeline.configs import PipelineConfig

MIN_AGE_POLLS = 10
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int) -> int | None:
    """The resident memory of process `pid` (None if it is gone or this is not Linux)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def reason(config: PipelineConfig, worker_status: dict[str, Any] | None, baseline: int | None, rss: int | None,
           age: float) -> str | None:
    """Why a worker of this `age` (seconds), whose status file says `worker_status`, should be
    replaced now, or None."""
    if age < MIN_AGE_POLLS * config.poll_seconds:
        return None
    hot_swaps = max(0, int((worker_status or {}).get("swaps", 0)) - 1)  # its first load is not a hot swap
    if config.worker_recycle_swaps and hot_swaps >= config.worker_recycle_swaps:
        return f"{hot_swaps} hot swaps (worker_recycle_swaps={config.worker_recycle_swaps})"
    limit = config.worker_recycle_growth_mb * 2**20
    if limit and baseline is not None and rss is not None and rss - baseline >= limit:
        return (f"its memory grew by {(rss - baseline) / 2**20:.0f} MB since it was ready "
                f"(worker_recycle_growth_mb={config.worker_recycle_growth_mb})")
    return None
