"""Every detector name a user can choose: the registry's detectors (built-ins and plug-ins), their
own validated ONNX models (`onnx:<name>`) and, in experiments on a dataset, the predictions uploaded
for that dataset (`external:<name>`).

Validation, queue routing, the engine, the pages and the API resolve names here, so a brought-in
detector is chosen, refused, queued and run by the same rules as a registered one.
"""

from inference.catalogue import CatalogueEntry, catalogue_entries, catalogue_entry

ONNX_PREFIX = "onnx:"
EXTERNAL_PREFIX = "external:"
BROUGHT_IN_FAMILIES = ("onnx", "external")


def is_brought_in(name: str) -> bool:
    return name.startswith((ONNX_PREFIX, EXTERNAL_PREFIX))


def detector_entry(owner, name: str, dataset=None) -> CatalogueEntry:
    """The entry of `name` for `owner` (and, for predictions, `dataset`); KeyError saying why when
    there is none: unknown, not the owner's, not validated yet, or uploaded for another dataset."""
    if name.startswith(ONNX_PREFIX):
        from experiments.onnx_models.selectors import onnx_entry

        return onnx_entry(owner, name.removeprefix(ONNX_PREFIX))
    if name.startswith(EXTERNAL_PREFIX):
        from experiments.predictions.selectors import external_entry

        return external_entry(owner, name.removeprefix(EXTERNAL_PREFIX), dataset)
    return catalogue_entry(name)


def detector_entries(owner, dataset=None) -> dict[str, CatalogueEntry]:
    """Every detector `owner` can run, by name: the registry's, their ready ONNX models and, with a
    dataset, the predictions uploaded for it; without one, the predictions of every dataset they own."""
    from experiments.onnx_models.selectors import onnx_entries
    from experiments.predictions.selectors import external_entries

    return {**catalogue_entries(), **onnx_entries(owner), **external_entries(owner, dataset)}
