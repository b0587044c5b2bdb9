from django.urls import path

from experiments.live.consumers import NotificationConsumer, RunProgressConsumer, TrainingProgressConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunProgressConsumer.as_asgi()),
    path("ws/training/<int:job_id>/", TrainingProgressConsumer.as_asgi()),
    path("ws/notifications/", NotificationConsumer.as_asgi()),
]
