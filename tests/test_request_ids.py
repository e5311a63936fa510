"""serving/request_ids.py: the answered-ids table behaves as the last N ids, in one process and
shared by several."""
from __future__ import annotations

import random
import subprocess
import sys

from serving import request_ids
from serving.request_ids import RequestIds


class Reference:
    """What the table must answer: the last `size` ids reserved, less those released."""

    def __init__(self, size: int):
        self.size, self.ids, self.order = size, set(), []

    def reserve(self, request_id: str) -> bool:
        if request_id in self.ids:
            return False
        self.order.append(request_id)
        self.ids.add(request_id)
        if len(self.order) > self.size:
            oldest = self.order[-self.size - 1]
            if oldest in self.ids and oldest not in self.order[-self.size:]:
                self.ids.discard(oldest)
        return True

    def release(self, request_id: str) -> None:
        self.ids.discard(request_id)


def test_it_remembers_exactly_the_last_ids_through_evictions_releases_and_collisions(tmp_path):
    rng = random.Random(7)
    for table in (RequestIds(size=37), RequestIds(request_ids.create(tmp_path, size=37))):
        reference = Reference(37)
        pool = [f"id-{i}" for i in range(120)]  # a small pool: ids come back, are evicted, released, come back
        for step in range(20_000):
            request_id = rng.choice(pool)
            if rng.random() < 0.2:
                table.release(request_id)
                reference.release(request_id)
            else:
                assert table.reserve(request_id) == reference.reserve(request_id), (step, request_id)
        table.close()


RESERVE_ALL = """
import sys
from serving.request_ids import RequestIds
table = RequestIds(sys.argv[1])
print("\\n".join(i for i in (f"shared-{n}" for n in range(20000)) if table.reserve(i)))
"""


def test_processes_sharing_the_file_never_both_get_an_id(tmp_path):
    path = request_ids.create(tmp_path, size=50_000)
    workers = [subprocess.Popen([sys.executable, "-c", RESERVE_ALL, str(path)], stdout=subprocess.PIPE, text=True)
               for _ in range(3)]
    won = [line for worker in workers for line in worker.communicate(timeout=60)[0].split()]
    assert sorted(won) == sorted(f"shared-{n}" for n in range(20000))  # each id reserved by exactly one process
    assert not RequestIds(path).reserve("shared-5") and RequestIds(path).reserve("new")
