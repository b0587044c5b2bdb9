"""`storage.save_bytes` on local disk: a reader never sees a partial file, however many threads write
the same key, and a write that fails leaves nothing behind."""

import os
import threading

import pytest

from experiments import storage

KEY = "results/atomic-test/levels.png"


@pytest.fixture
def clean():
    storage.delete_prefix("results/atomic-test")
    yield
    storage.delete_prefix("results/atomic-test")


def _leftovers() -> list[str]:
    folder = os.path.dirname(storage.local_path(KEY))
    return sorted(name for name in os.listdir(folder) if name.endswith(".part")) if os.path.isdir(folder) else []


def test_readers_see_only_whole_files_while_threads_rewrite_one_key(clean):
    payloads = [bytes([index]) * (200_000 + 50_000 * index) for index in range(4)]
    storage.save_bytes(KEY, payloads[0])
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(storage.read_bytes(KEY))

    def write(payload):
        for _ in range(30):
            storage.save_bytes(KEY, payload)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(payload,)) for payload in payloads]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert seen <= set(payloads) and len(seen) >= 1  # never a torn or truncated file
    assert storage.read_bytes(KEY) in payloads
    assert _leftovers() == []


def test_a_failed_write_leaves_neither_the_key_nor_a_partial_file(clean, monkeypatch):
    def refuse(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        storage.save_bytes(KEY, b"x" * 1000)
    assert not storage.exists(KEY)
    assert _leftovers() == []
