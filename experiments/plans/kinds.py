"""`plan(owner, name, ...)`: a detector name resolved once into a `DetectorPlan`; the one place that
tells the kinds of detector apart.

A name is a registered detector (built-ins and plug-ins), the registry's ensemble, one of the owner's
validated ONNX models (``onnx:<name>``) or predictions the owner uploaded for the experiment's dataset
(``external:<name>``). Validation, the outbox, the lists, the engine and the reports read the plan, so
a brought-in detector is chosen, refused, queued and run by the same rules as a registered one. A new
kind (user-defined ensembles) adds its prefix, its lookup and its plan here."""

import experiments.plans.worker_side as worker
from experiments.errors import ServiceError
from experiments.onnx_models.selectors import ready_model, ready_models
from experiments.plans.record import AVAILABLE, DetectorPlan, WeightsPlan, split_name
from experiments.plans.registered import described_by, is_trained, registered_plan
from experiments.predictions.selectors import prediction_set, prediction_sets_for
from inference.catalogue import catalogue_entry, catalogue_names


def plan(owner, name: str, *, dataset=None, experiment=None, on_worker: bool = False) -> DetectorPlan:
    """The plan of detector `name` for `owner`, in `experiment` when given (its dataset, weights
    choice, input-size override and scaling; else `dataset`, weights "auto", no override). With
    `on_worker`, what the worker needs too: local files, the checkpoint's own input size, device and
    precision. KeyError saying why when there is no such detector for `owner`: unknown, not theirs,
    not validated yet, or predictions uploaded for another dataset."""
    if experiment is not None:
        owner, dataset = experiment.owner, experiment.dataset
    kind, bare = split_name(name)
    if kind == "onnx":
        found = ready_model(owner, bare)
    elif kind == "external":
        found = prediction_set(owner, bare, dataset)
    else:
        found = catalogue_entry(name)
        kind = "ensemble" if found.family == "ensemble" else "registered"
    return _plan_of(kind, found, owner, experiment, on_worker)


def _plan_of(kind: str, found, owner, experiment, on_worker: bool) -> DetectorPlan:
    """The plan of what the name was found to be: a refused name says why before anything is planned."""
    if kind == "onnx":
        return _onnx_plan(found, experiment, on_worker)
    if kind == "external":
        return _external_plan(found, on_worker)
    if kind == "ensemble":
        return _ensemble_plan(owner, found, experiment, on_worker)
    choice = _choice(experiment, found.name)
    return registered_plan(owner, found, choice=choice, experiment=experiment, on_worker=on_worker)


def run_plan(run_or_experiment, name: str) -> DetectorPlan:
    """The plan a worker runs `name` by in a run (or experiment)."""
    experiment = getattr(run_or_experiment, "experiment", run_or_experiment)
    return plan(experiment.owner, name, experiment=experiment, on_worker=True)


def plans_for(owner, dataset=None) -> dict[str, DetectorPlan]:
    """Every detector `owner` can run, by name: the registry's, their ready ONNX models and, with a
    dataset, the predictions uploaded for it; without one, the predictions of every dataset they own."""
    plans = {name: plan(owner, name, dataset=dataset) for name in catalogue_names()}
    plans.update({model.detector_name: _onnx_plan(model, None, False) for model in ready_models(owner)})
    plans.update({found.detector_name: _external_plan(found, False) for found in prediction_sets_for(owner, dataset)})
    return plans


def detector_names(owner, dataset=None) -> list[str]:
    """The names `plans_for` plans, sorted, without planning them (a filter's choices)."""
    brought_in = [m.detector_name for m in ready_models(owner)] + [
        p.detector_name for p in prediction_sets_for(owner, dataset)
    ]
    return sorted({*catalogue_names(), *brought_in})  # a name uploaded for two datasets is listed once


def _choice(experiment, name: str) -> str:
    return str(experiment.detector_weights.get(name, "auto")) if experiment is not None else "auto"


def _scaling(experiment) -> str:
    return experiment.scaling if experiment is not None else "auto"


def _ensemble_plan(owner, spec, experiment, on_worker: bool) -> DetectorPlan:
    """The registry's ensemble: its classical members and every learned detector whose choice in the
    same run (the experiment's, when it is among its detectors, else "auto") is a trained platform
    checkpoint, each planned as it would be alone in the run; queued on `gpu` when any member is learned.
    An experiment cannot name members or mixing weights, and the ensemble's own choice changes nothing."""
    from inference.builtin_detectors import ENSEMBLE_CLASSICAL_MEMBERS

    described = described_by(spec)
    in_run = experiment.detectors if experiment is not None else ()
    members = [
        registered_plan(owner, catalogue_entry(name), choice="auto", experiment=experiment, on_worker=on_worker)
        for name in ENSEMBLE_CLASSICAL_MEMBERS
    ]  # classical: no weights to choose
    for name in catalogue_names():
        member = catalogue_entry(name)
        choice = _choice(experiment, name) if name in in_run else "auto"
        if not member.learned or member.family == "ensemble" or choice == "random":
            continue
        try:
            planned = registered_plan(owner, member, choice=choice, experiment=experiment, on_worker=on_worker)
        except ServiceError:  # a pinned checkpoint gone by now: the member is left out, not run untrained
            continue
        if is_trained(planned.weights):
            members.append(planned)
    device = worker.inference_device() if on_worker else None
    return DetectorPlan(
        **described, kind="ensemble", weights=WeightsPlan(_choice(experiment, spec.name), "none", "none", "auto"),
        scaling=_scaling(experiment), queue="gpu" if any(m.learned for m in members) else "cpu",
        members=tuple(members), device=device,
        precision=worker.expected_precision(spec.learned, device) if on_worker else None,
    )  # fmt: skip


def _onnx_plan(model, experiment, on_worker: bool) -> DetectorPlan:
    """A user's ONNX model: it runs at the size its contract names, or at B's size (None) when it takes
    any (an experiment's override does not apply: the file fixes what it takes); in fp32, on the GPU
    only where onnxruntime has its CUDA provider."""
    size = f"at {model.input_size} px" if model.input_size else "at B's size"
    load = worker.onnx_model_file(model) if on_worker else None
    return DetectorPlan(
        name=model.detector_name, kind="onnx", family="onnx", learned=True,
        description=f"your ONNX model ({model.inputs} inputs, {model.output} out, {size}; sha256 {model.sha256[:12]})",
        relative_cost=(model.probe or {}).get("probe_ms"), params=(model.probe or {}).get("params"),
        default_input_size=model.input_size,
        weights=WeightsPlan(_choice(experiment, model.detector_name), "uploaded model", f"onnx:{model.sha256}", load),
        input_size=model.input_size, input_size_source="model", scaling=_scaling(experiment), queue="gpu",
        device=worker.onnx_device(worker.inference_device()) if on_worker else None,
        precision="fp32" if on_worker else None, row=model,
    )  # fmt: skip


def _external_plan(predictions, on_worker: bool) -> DetectorPlan:
    """Uploaded maps: nothing to load or compute; they stand in for a model on a `cpu` worker."""
    load = worker.prediction_source(predictions) if on_worker else None
    return DetectorPlan(
        name=predictions.detector_name, kind="external", family="external", learned=False,
        description=f"{predictions.kind} predictions uploaded for dataset {predictions.dataset.name!r} "
        "(made elsewhere: latency and memory not measured here)",
        relative_cost=None, params=None, default_input_size=None,
        weights=WeightsPlan("auto", "uploaded predictions", f"external:{predictions.archive_sha256}", load),
        availability=AVAILABLE, device="cpu" if on_worker else None, precision="fp32" if on_worker else None,
        row=predictions,
    )  # fmt: skip
