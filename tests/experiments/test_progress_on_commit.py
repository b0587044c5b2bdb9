"""Live events published inside a transaction leave when it commits, and never when it rolls back; outside
one they leave at once (on the real channel layer)."""

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.layers import get_channel_layer
from django.db import connection, transaction

from experiments.live.progress import publish

pytestmark = pytest.mark.django_db(transaction=True)


def _steps_received(group: str, publish_steps, expected: int) -> list[str]:
    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        await asyncio.get_running_loop().run_in_executor(None, publish_steps)
        events = [(await asyncio.wait_for(layer.receive(channel), 10))["event"] for _ in range(expected)]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.3)
        await layer.group_discard(group, channel)
        return [event["step"] for event in events]

    with ThreadPoolExecutor(max_workers=1) as pool:  # its own loop: never the one a browser test may hold
        return pool.submit(asyncio.run, scenario()).result()


def _publish_from_another_thread(group: str, step: str) -> None:
    def outside():
        publish(group, {"step": step})
        connection.close()

    thread = threading.Thread(target=outside)
    thread.start()
    thread.join()


def test_an_event_inside_a_transaction_leaves_after_what_was_sent_while_it_was_open():
    def steps():
        with transaction.atomic():
            publish("commit-order", {"step": "inside"})
            _publish_from_another_thread("commit-order", "meanwhile")
        connection.close()

    assert _steps_received("commit-order", steps, expected=2) == ["meanwhile", "inside"]


def test_an_event_of_a_rolled_back_transaction_is_never_sent():
    def steps():
        with contextlib.suppress(RuntimeError), transaction.atomic():
            publish("rollback", {"step": "rolled back"})
            raise RuntimeError("the write failed")
        publish("rollback", {"step": "after"})
        connection.close()

    assert _steps_received("rollback", steps, expected=1) == ["after"]
