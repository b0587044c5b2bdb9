"""Task leases: deliveries, deaths and heartbeats of the tasks workers run (`experiments.task_leases`)."""

from django.db import models


class TaskLease(models.Model):
    """One Celery task (by its id, which a redelivered or restored message keeps) held by a worker:
    how many deliveries it had, how many of them died with their worker, the holder's heartbeat,
    and whether it ended. See `experiments.task_leases`."""

    task_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=100)
    work = models.CharField(max_length=200, help_text="what the task does, e.g. run 5, detector absdiff")
    deliveries = models.PositiveIntegerField(default=0)
    deaths = models.PositiveIntegerField(default=0, help_text="deliveries whose worker died before they ended")
    running = models.BooleanField(default=False, db_index=True)
    holder = models.CharField(max_length=32, blank=True, help_text="the delivery now running it")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.task_name} {self.task_id} ({self.work})"
