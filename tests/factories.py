import factory
from django.contrib.auth import get_user_model

from experiments.datasets import services as dataset_services
from experiments.runs import engine


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"researcher{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def save_password(self, create, extracted, **kwargs):
        if create:
            self.save()


PASSWORD = "correct horse battery"


def make_dataset(owner, name="ds", pairs=(), **kwargs):
    """A dataset through the real services; `pairs` is a list of (name, a, b, label) bytes."""
    dataset = dataset_services.dataset_create(owner=owner, name=name, **kwargs)
    for pair_name, a, b, label in pairs:
        dataset_services.pair_create(dataset=dataset, name=pair_name, a_bytes=a, b_bytes=b, label_bytes=label)
    return dataset


def run_in_process(run):
    """The worker's steps, called here (no worker): prepare, each detector, finish."""
    engine.prepare_run(run.pk)
    for name in run.experiment.detectors:
        engine.run_detector(run.pk, name)
    engine.finish_run(run.pk)
    run.refresh_from_db()
    return run
