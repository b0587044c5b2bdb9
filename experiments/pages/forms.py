from django import forms

from experiments.errors import ServiceError
from experiments.models import Scaling, Split, ThresholdRule
from experiments.runs.validation import check_input_size, check_threshold, scaling_help
from inference.catalogue import catalogue_entries, catalogue_names
from inference.training_config import DEFAULTS, EPOCHS_RANGE, LOSSES


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class PairUploadForm(forms.Form):
    """Manual pairing: one pair with its three files named explicitly."""

    name = forms.CharField(max_length=255, help_text="unique in the dataset")
    image_a = forms.FileField(label="Image A (before)")
    image_b = forms.FileField(label="Image B (after)")
    label = forms.FileField(label="Change mask (optional, 255 = changed)", required=False)
    category = forms.CharField(max_length=100, required=False)
    split = forms.ChoiceField(choices=Split.choices, required=False)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data, initial=None):
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return super().clean(data, initial)


class BulkUploadForm(forms.Form):
    """Many loose files (`<name>_A.png`, `<name>_B.png`, `<name>_label.png`) or one LEVIR-CD zip."""

    files = MultipleFileField(
        widget=MultipleFileInput(attrs={"multiple": True, "accept": "image/*,.zip,.csv,.txt"}),
        required=False,
        label="Images or a zip",
    )
    category = forms.CharField(max_length=100, required=False, help_text="for pairs without one in categories.csv")

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("files"):
            raise forms.ValidationError("Choose image files (A, B and label per pair) or one zip to upload.")
        return cleaned


def detector_choices(entries=None):
    """Every detector a user can name (`experiments.plans.plans_for`); the registry's alone by default."""
    entries = catalogue_entries() if entries is None else entries
    return [(name, f"{name} ({entry.family})") for name, entry in sorted(entries.items())]


SPLIT_CHOICES = [
    ("", "the test split when the dataset has one, else every pair"),
    ("test", "test split"),
    ("val", "validation split"),
    ("train", "train split (pairs a model may have trained on)"),
    ("all", "every pair"),
]
SCALING_CHOICES = [
    (Scaling.AUTO, "auto: tile when B is more than twice the input size, else resize"),
    (Scaling.RESIZE, "resize the whole pair to the input size"),
    (Scaling.TILE, "tile B at the input size (25% overlap, blended)"),
]
THRESHOLD_RULE_CHOICES = [
    (ThresholdRule.FIXED, "fixed: one threshold for every detector"),
    (ThresholdRule.VALIDATION, "validation: each detector's F1-optimal threshold on the val split"),
]
BEST_CLASSICAL = ("", "the best classical detector (under the threshold rule)")
SPLITS_CHOSEN = {"": None, "all": [], "test": ["test"], "val": ["val"], "train": ["train"]}


def rule(check):
    """A form validator from one of the run rules, so pages refuse what the API and CLI refuse."""

    def validate(value):
        try:
            check(value)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from None

    return validate


class ExperimentForm(forms.Form):
    dataset = forms.TypedChoiceField(coerce=int)
    name = forms.CharField(max_length=200, required=False)
    detectors = forms.MultipleChoiceField(choices=detector_choices, widget=forms.CheckboxSelectMultiple)
    align = forms.BooleanField(required=False, help_text="warp A onto B (SIFT + RANSAC) before detection")
    threshold = forms.FloatField(initial=0.5, validators=[rule(check_threshold)])
    threshold_rule = forms.ChoiceField(
        choices=THRESHOLD_RULE_CHOICES,
        initial=ThresholdRule.FIXED,
        required=False,  # blank: fixed
        help_text="fixed: the threshold above for every detector; validation: each detector's F1-optimal "
        "threshold on the dataset's val split, applied to the scored pairs",
    )
    validation_holdout = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=0.5,
        help_text="validation rule without a val split: the share of train pairs held out (seeded)",
    )
    input_size = forms.IntegerField(
        required=False,
        validators=[rule(check_input_size)],
        help_text="leave empty: each learned detector at its own size (its checkpoint's training size, else its "
        "default); a number overrides it for every learned detector",
    )
    scaling = forms.ChoiceField(
        choices=SCALING_CHOICES,
        initial=Scaling.AUTO,
        required=False,  # blank: auto
        help_text="how learned detectors see pairs larger than their input size",
        error_messages={"invalid_choice": "Unknown scaling %(value)s: " + scaling_help() + "."},
    )
    splits = forms.ChoiceField(
        choices=SPLIT_CHOICES, required=False, help_text="which pairs are scored; see the dataset's split counts"
    )
    seed = forms.IntegerField(initial=0)
    baseline_detector = forms.ChoiceField(
        choices=lambda: [BEST_CLASSICAL] + [(n, n) for n in catalogue_names()], required=False
    )

    def __init__(self, *args, datasets=(), weight_choices=None, entries=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = [(d.pk, d.name) for d in datasets]
        if entries is not None:  # the user's own: their ONNX models and uploaded predictions too
            self.fields["detectors"].choices = detector_choices(entries)
            self.fields["baseline_detector"].choices = [BEST_CLASSICAL] + [(n, n) for n in sorted(entries)]
        self.weight_fields = []
        for name, choices in (weight_choices or {}).items():
            field_name = f"weights_{name}"
            self.fields[field_name] = forms.ChoiceField(choices=choices, required=False, label=f"Weights of {name}")
            self.weight_fields.append((name, field_name))

    def service_kwargs(self) -> dict:
        """cleaned_data shaped for `services.experiment_create` (weights only for chosen detectors)."""
        data = {k: v for k, v in self.cleaned_data.items() if not k.startswith("weights_")}
        data["splits"] = SPLITS_CHOSEN[data.get("splits") or ""]
        data["detector_weights"] = {
            name: self.cleaned_data[field_name]
            for name, field_name in self.weight_fields
            if name in data["detectors"] and self.cleaned_data.get(field_name) not in ("", None, "auto")
        }
        return data


def learned_detector_choices():
    return [(name, name) for name, entry in sorted(catalogue_entries().items()) if entry.learned]


class TrainingForm(forms.Form):
    detector = forms.ChoiceField(choices=learned_detector_choices)
    dataset = forms.TypedChoiceField(coerce=int)
    epochs = forms.IntegerField(initial=DEFAULTS.epochs, min_value=EPOCHS_RANGE[0], max_value=EPOCHS_RANGE[1])
    loss = forms.ChoiceField(choices=[(loss, loss) for loss in LOSSES], initial=DEFAULTS.loss)
    size = forms.IntegerField(initial=DEFAULTS.size, label="Input size", validators=[rule(check_input_size)])
    seed = forms.IntegerField(initial=DEFAULTS.seed)
    batch_size = forms.IntegerField(initial=DEFAULTS.batch_size, min_value=1, max_value=256)

    def __init__(self, *args, datasets=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = [(d.pk, d.name) for d in datasets]
