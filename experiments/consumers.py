"""WebSocket consumers: follow a run's (or a training job's) progress live."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from experiments import progress, selectors


class RunProgressConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/runs/<id>/`: only the run's owner or staff; a snapshot on connect, then each event."""

    async def connect(self):
        run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if await self._snapshot(run_id) is None:
            await self.close(code=4404)  # before accept: the handshake is refused (HTTP 403)
            return
        # Join first, snapshot second: no event falls between the two, and events that arrive
        # meanwhile are dispatched only after this handler returns (their seq orders them).
        self.group = progress.run_group(run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await self._snapshot(run_id))

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def group_event(self, message):
        await self.send_json(message["event"])

    @database_sync_to_async
    def _snapshot(self, run_id):
        run = selectors.run_for_user(self.scope["user"], run_id)
        if run is None:
            return None
        return {**progress.run_snapshot(run), "seq": progress.current_seq(progress.run_group(run_id))}
