from django import forms

from experiments.models import Split
from inference.catalogue import BUILTIN_DETECTORS, catalogue_names


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class PairUploadForm(forms.Form):
    name = forms.CharField(max_length=255, help_text="unique in the dataset")
    image_a = forms.FileField(label="Image A (before)")
    image_b = forms.FileField(label="Image B (after)")
    label = forms.FileField(label="Change mask (optional, 255 = changed)", required=False)
    category = forms.CharField(max_length=100, required=False)
    split = forms.ChoiceField(choices=Split.choices, required=False)


def detector_choices():
    return [(name, f"{name} ({BUILTIN_DETECTORS[name].family})") for name in catalogue_names()]


class ExperimentForm(forms.Form):
    dataset = forms.TypedChoiceField(coerce=int)
    name = forms.CharField(max_length=200, required=False)
    detectors = forms.MultipleChoiceField(choices=detector_choices, widget=forms.CheckboxSelectMultiple)
    align = forms.BooleanField(required=False, help_text="warp A onto B (SIFT + RANSAC) before detection")
    threshold = forms.FloatField(initial=0.5, min_value=0.01, max_value=0.99)
    input_size = forms.IntegerField(initial=256, min_value=32, max_value=1024)
    seed = forms.IntegerField(initial=0)
    baseline_detector = forms.ChoiceField(
        choices=[("", "first chosen")] + [(n, n) for n in catalogue_names()], required=False
    )

    def __init__(self, *args, datasets=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = [(d.pk, d.name) for d in datasets]
