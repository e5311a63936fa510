"""The request log on real files: group commit, directory fsyncs, retention and size bounds."""
from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

from serving import request_log


def _records(request_id: str, count: int, when: datetime) -> list[dict]:
    return [request_log.record(request_id, i, when, "taxi", "1", {"fare": 1.5}, {"probability": 0.5, "predicted_class": 1})
            for i in range(count)]


def test_concurrent_appends_share_fsyncs_and_all_land(tmp_path):
    log = request_log.RequestLog(tmp_path, name="w.jsonl")
    when = datetime.now(timezone.utc)
    threads = [threading.Thread(target=lambda n=n: [log.append(_records(f"t{n}-{k}", 2, when), when) for k in range(50)])
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window = request_log.read(tmp_path, when - timedelta(minutes=1), when + timedelta(minutes=1))
    assert len(window.records) == 8 * 50 * 2 and window.skipped_lines == 0
    assert len({(r["request_id"], r["index"]) for r in window.records}) == 800
    assert log.commits < 400  # 400 appends, fewer writes + fsyncs: concurrent ones were grouped


def test_new_partitions_and_files_are_followed_by_a_directory_fsync(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    when = datetime(2026, 11, 22, 6, 15, tzinfo=timezone.utc)
    log = request_log.RequestLog(tmp_path / "log", name="w.jsonl")
    log.append(_records("a", 1, when), when)
    hour = tmp_path / "log" / "date=2026-11-22" / "hour=06"
    assert synced == [str(tmp_path), str(tmp_path / "log"), str(hour.parent), str(hour), str(hour / "w.jsonl")]
    synced.clear()
    log.append(_records("b", 1, when), when)
    assert synced == [str(hour / "w.jsonl")]  # an existing file: only its data


def test_a_writer_reopening_a_torn_file_starts_a_fresh_line(tmp_path):
    when = datetime.now(timezone.utc)
    path = request_log.partition_dir(tmp_path, when) / "w.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"request_id": "torn", "ind')
    request_log.RequestLog(tmp_path, name="w.jsonl").append(_records("after", 1, when), when)
    window = request_log.read(tmp_path, when - timedelta(minutes=1), when + timedelta(minutes=1))
    assert [r["request_id"] for r in window.records] == ["after"] and window.skipped_lines == 1


def test_retention_deletes_old_hours_then_the_oldest_over_the_size_limit(tmp_path):
    now = datetime(2026, 11, 22, 12, 30, tzinfo=timezone.utc)
    log = request_log.RequestLog(tmp_path, name="w.jsonl")
    for hours_ago in (200, 30, 20, 3, 2, 1, 0):
        when = now - timedelta(hours=hours_ago)
        log.append(_records(f"h{hours_ago}", 10, when), when)
        log.close()
    size = sum(f.stat().st_size for f in tmp_path.rglob("*.jsonl")) // 7  # bytes per partition
    removed = request_log.enforce_retention(tmp_path, now, max_age_hours=168, max_bytes=10**9)
    assert [p.parent.name + "/" + p.name for p in removed] == ["date=2026-11-14/hour=04"]
    assert not (tmp_path / "date=2026-11-14").exists()  # its empty date folder too
    removed = request_log.enforce_retention(tmp_path, now, max_age_hours=168, max_bytes=3 * size)
    assert len(removed) == 3  # the oldest, until 3 partitions fit
    left = [start for start, _ in request_log.partitions(tmp_path)]
    assert left == [now.replace(minute=0) - timedelta(hours=h) for h in (2, 1, 0)]
    oldest = request_log.partitions(tmp_path)[0][1]
    assert request_log.enforce_retention(tmp_path, now, max_age_hours=0, max_bytes=0) == [oldest]
    assert len(request_log.partitions(tmp_path)) == 2  # the current and the previous hour always stay


def test_appends_land_in_the_partition_of_their_own_hour(tmp_path):
    log = request_log.RequestLog(tmp_path, name="w.jsonl")
    late, next_hour = datetime(2026, 11, 22, 6, 59, 59, 999999, tzinfo=timezone.utc), datetime(2026, 11, 22, 7, tzinfo=timezone.utc)
    for request_id, when in [("a", late), ("b", next_hour), ("c", late), ("d", next_hour + timedelta(days=1))]:
        log.append(_records(request_id, 1, when), when)  # "c": a batch of 06:59 committed after one of 07:00
    found = {folder.relative_to(tmp_path).as_posix(): [r["request_id"] for r in request_log.read(tmp_path, start, start + timedelta(hours=1)).records]
             for start, folder in request_log.partitions(tmp_path)}
    assert found == {"date=2026-11-22/hour=06": ["a", "c"], "date=2026-11-22/hour=07": ["b"], "date=2026-11-23/hour=07": ["d"]}
