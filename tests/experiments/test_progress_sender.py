"""Progress events leave through one event loop per process (`experiments.live.progress._Sender`): they
arrive on the real Redis channel layer, one sender thread serves every publish, and a forked worker
process gets its own loop instead of the parent's (which does not run in the child)."""

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer

from experiments.live.progress import publish


def _received(group: str, publish_in_child: bool, count: int) -> list[dict]:
    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _publish_all, group, publish_in_child, count)
        events = [await asyncio.wait_for(layer.receive(channel), 10) for _ in range(count)]
        await layer.group_discard(group, channel)
        return [message["event"] for message in events]

    with ThreadPoolExecutor(max_workers=1) as pool:  # its own loop: never the one a browser test may hold
        return pool.submit(asyncio.run, scenario()).result()


def _publish_all(group: str, in_child: bool, count: int) -> None:
    if not in_child:
        for index in range(count):
            publish(group, {"index": index})
        return
    pid = os.fork()
    if pid == 0:  # the child: as a prefork worker after the parent already published
        try:
            for index in range(count):
                publish(group, {"index": index, "pid": os.getpid()})
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _senders() -> int:
    return sum(thread.name == "channel-layer-sender" for thread in threading.enumerate())


def test_every_event_arrives_in_order_through_one_sender_thread():
    events = _received("sender-test", publish_in_child=False, count=20)
    assert [event["index"] for event in events] == list(range(20))
    assert [event["seq"] for event in events] == sorted(event["seq"] for event in events)
    assert _senders() == 1


def test_a_forked_process_publishes_through_its_own_loop():
    publish("sender-warm", {"index": -1})  # the parent's sender thread exists before the fork
    events = _received("sender-fork", publish_in_child=True, count=3)
    assert [event["index"] for event in events] == [0, 1, 2]
    assert {event["pid"] for event in events} != {os.getpid()}
