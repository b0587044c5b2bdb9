"""WebSocket consumers: follow a run's or a training job's progress live.

Only the owner (or staff) is admitted; the handshake of anyone else is refused (HTTP 403).
On connect the client gets a snapshot, then every event; events carry a sequence number.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from experiments.live import progress
from experiments.runs import selectors as run_selectors
from experiments.training import selectors as training_selectors


class ProgressConsumer(AsyncJsonWebsocketConsumer):
    url_kwarg = ""

    def group_name(self, object_id: int) -> str:
        raise NotImplementedError

    def snapshot(self, user, object_id: int) -> dict | None:
        """The snapshot for `user`, or None when the object is not theirs."""
        raise NotImplementedError

    async def connect(self):
        object_id = int(self.scope["url_route"]["kwargs"][self.url_kwarg])
        user = self.scope.get("user")
        if user is None or await database_sync_to_async(self.snapshot)(user, object_id) is None:
            await self.close(code=4404)
            return
        # Join first, snapshot second: no event falls between the two, and events that arrive
        # meanwhile are dispatched only after this handler returns (their seq orders them).
        self.group = self.group_name(object_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        snapshot = await database_sync_to_async(self.snapshot)(user, object_id)
        await self.send_json({**snapshot, "seq": await database_sync_to_async(progress.current_seq)(self.group)})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def group_event(self, message):
        await self.send_json(message["event"])


class RunProgressConsumer(ProgressConsumer):
    """`/ws/runs/<id>/`."""

    url_kwarg = "run_id"

    def group_name(self, object_id):
        return progress.run_group(object_id)

    def snapshot(self, user, object_id):
        run = run_selectors.run_for_user(user, object_id)
        return progress.run_snapshot(run) if run else None


class TrainingProgressConsumer(ProgressConsumer):
    """`/ws/training/<id>/`."""

    url_kwarg = "job_id"

    def group_name(self, object_id):
        return progress.training_group(object_id)

    def snapshot(self, user, object_id):
        from experiments.live.progress import training_snapshot

        job = training_selectors.training_jobs_visible_to(user).filter(pk=object_id).first()
        return training_snapshot(job) if job else None


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/notifications/`: the signed-in user's `finished` events (their runs and training jobs)."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = progress.user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "ready", "user": user.pk})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def group_event(self, message):
        await self.send_json(message["event"])
