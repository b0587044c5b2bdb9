from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0009_heartbeats_task_leases"),
    ]

    operations = [
        migrations.AddField(
            model_name="predictionset",
            name="size_bytes",
            field=models.PositiveBigIntegerField(default=0, help_text="bytes of its stored maps (storage quota)"),
        ),
    ]
