"""Checkpoints say who wrote them (issue 26: uploaded ones are never torch.load-ed in a worker) and
where an upload's safetensors copy is. Existing rows: the shipped ones (public) and those a training
job made are ours; every other one is taken as uploaded and gets its copy, made in the sandbox, on
first use."""

from django.db import migrations, models


def origins(apps, schema_editor):
    checkpoint = apps.get_model("experiments", "ModelCheckpoint")
    training_job = apps.get_model("experiments", "TrainingJob")
    trained = training_job.objects.exclude(checkpoint=None).values_list("checkpoint_id", flat=True)
    checkpoint.objects.filter(is_public=True).update(origin="shipped")
    checkpoint.objects.filter(is_public=False, pk__in=list(trained)).update(origin="trained")


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0011_webhooks_refused_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelcheckpoint",
            name="origin",
            field=models.CharField(
                choices=[("trained", "Trained"), ("shipped", "Shipped"), ("uploaded", "Uploaded")],
                default="uploaded",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="modelcheckpoint",
            name="tensors_key",
            field=models.CharField(blank=True, default="", help_text="safetensors copy (uploads)", max_length=500),
        ),
        migrations.AddField(
            model_name="modelcheckpoint",
            name="tensors_sha256",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(origins, migrations.RunPython.noop),
    ]
