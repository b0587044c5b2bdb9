"""The records of a detector plan: what a detector is, what it loads and from where, at which size,
where it is queued and runs, and whether it can run at all (`experiments.plans.kinds` makes them)."""

from dataclasses import dataclass

from inference.detector_spec import FACTS

ONNX_PREFIX = "onnx:"
EXTERNAL_PREFIX = "external:"
KINDS = ("registered", "ensemble", "onnx", "external")


def split_name(name: str) -> tuple[str, str]:
    """What a detector name says of its kind, and the name without its prefix: ``("onnx", model)``,
    ``("external", predictions)``, else ``("registered", name)`` (the registry tells an ensemble apart)."""
    for kind, prefix in (("onnx", ONNX_PREFIX), ("external", EXTERNAL_PREFIX)):
        if name.startswith(prefix):
            return kind, name.removeprefix(prefix)
    return "registered", name


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""  # why not, and what fixes it; empty when available


AVAILABLE = Availability(True)


@dataclass(frozen=True)
class WeightsPlan:
    """What a detector loads, and where that choice came from.

    ``choice``: as the experiment asked (``auto`` | ``random`` | ``checkpoint:<sha256>``). ``source``:
    ``none`` (nothing to load), ``random``, ``pinned checkpoint``, ``own checkpoint``, ``public
    checkpoint``, ``imagenet``, ``unavailable``, ``uploaded model`` or ``uploaded predictions``.
    ``ref``: the identity the result cache knows before loading (``none``, ``random``,
    ``checkpoint:<sha256>``, ``onnx:<sha256>``, ``external:<sha256>``; ``auto`` when only loading
    tells). ``load``: what the worker builds with (``create_detector(weights=...)``: ``"auto"``, None
    for random, a local checkpoint path, an uploaded checkpoint's `WeightsSource`; an ONNX model's file;
    uploaded maps' source); None in a plan
    made off the worker. ``checkpoint``: the platform checkpoint chosen, if any."""

    choice: str
    source: str
    ref: str
    load: object = None
    checkpoint: object = None

    def identity(self, seed: int) -> str | None:
        """The weights' identity in the result-cache key as loading would report it (`weights:sha256`),
        known before loading; None under "auto" without a checkpoint (ImageNet or nothing: only loading tells)."""
        if self.ref == "none":
            return "none:None"
        if self.ref == "random":
            return f"random:seed={seed}"  # seeded init: the seed identifies the weights
        if self.ref.startswith("checkpoint:"):
            return f"{self.ref}:{self.ref.split(':', 1)[1]}"
        if self.ref.startswith((ONNX_PREFIX, EXTERNAL_PREFIX)):
            return self.ref  # the file's (or the upload's) sha256
        return None

    @property
    def listed(self) -> str:
        """What the detector lists say a run would use."""
        if self.source in ("uploaded model", "uploaded predictions"):
            return "brought in"
        if self.checkpoint is not None:
            return self.checkpoint.provenance
        return "none" if self.source == "none" else "untrained"


@dataclass(frozen=True)
class DetectorPlan:
    """One detector as a run (or a list) uses it; made by `experiments.plans.plan`, read everywhere.

    The description (``family``, ``learned``, ``description``, ``relative_cost``, ``params``,
    ``default_input_size``) is the registry's for registered detectors and the upload's for brought-in
    ones. ``input_size`` / ``input_size_source``: the size a learned detector runs at and why
    (``override``, ``checkpoint``, ``registry``, ``default``, ``model``); None for the others.
    ``device`` and ``precision`` are chosen by the worker that runs it (None elsewhere). ``members``:
    an ensemble's members, each planned as it would be alone in the same run. ``row``: the uploaded
    model or prediction set a brought-in detector stands for."""

    name: str
    kind: str
    family: str
    learned: bool
    description: str
    relative_cost: float | None
    params: int | None
    default_input_size: int | None
    weights: WeightsPlan
    input_size: int | None = None
    input_size_source: str | None = None
    scaling: str = "auto"
    queue: str = "cpu"
    availability: Availability = AVAILABLE
    members: tuple["DetectorPlan", ...] = ()
    device: str | None = None
    precision: str | None = None
    row: object = None

    @property
    def learned_inside(self) -> bool:
        """Learned itself, or an ensemble with a learned member: its runtime and scaling matter."""
        return self.learned or any(member.learned for member in self.members)

    @property
    def brought_in(self) -> bool:
        """A user's own detector (an uploaded ONNX model or predictions): it comes with its weights."""
        return self.kind in ("onnx", "external")

    @property
    def made_elsewhere(self) -> bool:
        """Uploaded maps: nothing is loaded, computed, timed or measured here."""
        return self.kind == "external"

    def as_dict(self) -> dict:
        """The description as the API lists it, with the queue it runs on."""
        facts = {field: getattr(self, "default_input_size" if field == "input_size" else field) for field in FACTS}
        return {**facts, "queue": self.queue}

    def builder(self):
        """How the worker builds it on a model-cache miss: `builder(device)`, or None for the
        registry's `create_detector` (an ONNX model is no registered detector)."""
        if self.kind != "onnx":
            return None
        from functools import partial

        from django.conf import settings

        from inference.onnx_runner import RunnerLimits, SandboxedOnnxDetector

        # an uploaded model runs only in its sandboxed child (issue 26), within the sandbox's memory budget
        limits = RunnerLimits(memory_mb=settings.SANDBOX_MEMORY_MB, call_seconds=settings.ONNX_CALL_SECONDS)
        return partial(SandboxedOnnxDetector, self.name, self.weights.load, limits=limits)

    def build_options(self) -> dict:
        """This plan as an ensemble member, as `inference.detectors.ensemble.build_ensemble` takes it."""
        return {"name": self.name, "weights": self.weights.load, "input_size": self.input_size}


def made_elsewhere(record: dict) -> bool:
    """Whether a run's stored detector record (`Run.environment["detector_info"]`, a leaderboard row)
    is of uploaded maps, whose speed and memory were not measured here."""
    return record.get("family") == "external"
