"""Client request ids already answered: labels are joined on them, so one must not name two requests."""
from __future__ import annotations

import threading
from collections import OrderedDict

REMEMBERED_REQUEST_IDS = 100_000  # a client id answered again within these gets 409


class RequestIds:
    """The last REMEMBERED_REQUEST_IDS client request ids. Reserved when a request is accepted,
    released if it fails."""

    def __init__(self, size: int = REMEMBERED_REQUEST_IDS):
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, request_id: str) -> bool:
        with self._lock:
            if request_id in self._ids:
                return False
            self._ids[request_id] = None
            if len(self._ids) > self.size:
                self._ids.popitem(last=False)
            return True

    def release(self, request_id: str) -> None:
        with self._lock:
            self._ids.pop(request_id, None)
