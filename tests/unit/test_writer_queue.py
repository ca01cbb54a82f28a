"""SQLite's writers queue on a lock file instead of sleeping in SQLite's busy handler
(storage/engine.py, WriterQueue): one writer at a time across threads and processes, re-entrant
within a thread, and what only reads never waits for it."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from sqlalchemy import text

from storage.engine import EngineBound, WriterQueue, make_engine


def test_a_second_thread_waits_until_the_first_writer_is_done(tmp_path: Path) -> None:
    queue = WriterQueue.of(tmp_path / "a.db")
    order: list[str] = []
    second_waiting = threading.Event()

    def second() -> None:
        second_waiting.set()
        with queue.held():
            order.append("second")

    with queue.held():
        thread = threading.Thread(target=second)
        thread.start()
        second_waiting.wait(5)
        thread.join(0.2)  # it cannot get in while this thread holds the queue
        assert thread.is_alive()
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]


def test_the_queue_is_reentrant_within_a_thread_and_shared_per_database(tmp_path: Path) -> None:
    queue = WriterQueue.of(tmp_path / "b.db")
    assert WriterQueue.of(tmp_path / "b.db") is queue
    with queue.held(), queue.held():  # a transaction inside a transaction: no self-deadlock
        pass


def test_another_process_is_kept_out_while_a_writer_holds_the_queue(tmp_path: Path) -> None:
    queue = WriterQueue.of(tmp_path / "c.db")
    with queue.held():
        pid = os.fork()
        if pid == 0:  # the child: a non-blocking try must fail while the parent writes
            fd = os.open(queue.path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    store = EngineBound(make_engine(url))
    with store.transaction() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with store.transaction() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        # The write lock is held (BEGIN IMMEDIATE) and uncommitted: a reader sees the last
        # committed state at once instead of waiting.
        with store.reading() as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0
    with store.reading() as reader:
        assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 1
