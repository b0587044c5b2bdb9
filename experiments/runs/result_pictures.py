"""The pictures of a result: what a run writes, and what is drawn from it the first time it is read.

For each computed result a run writes two small files under `results/<cache key>/`: `levels.png`,
the probability map as its 256 levels (`inference.render.probability_levels`, exactly what the
heatmap's colours encode), and `mask.png`. The coloured heatmap (`heatmap.png`, viridis with its
colour bar) and the error map (`error-map.png`, against the pair's label, pixels outside the aligned
region white) are drawn from those files, the label and the valid region the first time anything
reads them (the media view, the report, the result archive) and stored beside them: the same pixels
the run would have drawn, kept off the run's critical path. Results stored before this drew every
picture during the run; their files are already there.

A finished run's consensus map of a pair (`runs/<run>/consensus/<pair>.png`: the share of the run's
finished detectors calling each pixel changed, as a heatmap) is drawn the same way, from their masks.
"""

import numpy as np

from experiments import storage
from inference import render

HEATMAP, MASK, ERROR_MAP, LEVELS = "heatmap.png", "mask.png", "error-map.png", "levels.png"
CONSENSUS = "consensus"


def write(cache_key: str, prob: np.ndarray, mask: np.ndarray, labelled: bool) -> dict:
    """Store a computed result's map and mask; its keys (the heatmap and error map drawn later)."""
    folder = f"results/{cache_key}"
    storage.save_bytes(f"{folder}/{LEVELS}", render.encode_png(render.probability_levels(prob)))
    mask_key = storage.save_bytes(f"{folder}/{MASK}", render.mask_png(mask))
    return {
        "heatmap_key": f"{folder}/{HEATMAP}",
        "mask_key": mask_key,
        "error_map_key": f"{folder}/{ERROR_MAP}" if labelled else "",
    }


def files(entry: dict) -> list[str]:
    """Every file a result's entry stands for (drawn or not): what to delete when it is discarded."""
    keys = [entry[name] for name in ("heatmap_key", "mask_key", "error_map_key") if entry.get(name)]
    if entry.get("heatmap_key"):
        keys.append(_sibling(entry["heatmap_key"], LEVELS))
    return keys


def stored(entry: dict) -> bool:
    """Whether the files a cached entry needs are still there (its heatmap drawn or drawable)."""
    heatmap = entry.get("heatmap_key", "")
    return (
        bool(heatmap)
        and storage.exists(entry["mask_key"])
        and (storage.exists(_sibling(heatmap, LEVELS)) or storage.exists(heatmap))
    )


def read(key: str) -> bytes:
    """The bytes of a media file, a result picture drawn first when it was not yet."""
    ensure(key)
    return storage.read_bytes(key)


def ensure(key: str) -> None:
    """Draw the result picture (or consensus map) at `key` when it is one not drawn yet; any other
    key is left alone (a missing file then stays missing, for the caller to report)."""
    parts = key.split("/")
    if _is_consensus(parts):
        draw = _consensus
    elif len(parts) == 3 and parts[0] == "results" and parts[2] in (HEATMAP, ERROR_MAP):
        draw = _heatmap if parts[2] == HEATMAP else _error_map
    else:
        return
    if storage.exists(key):
        return
    picture = draw(key)
    if picture is not None:
        storage.save_bytes(key, picture)


def consensus_key(run_id: int, pair_id: int) -> str:
    return storage.run_key(run_id, CONSENSUS, f"{pair_id}.png")


def forget_consensus_maps(run_id: int) -> None:
    """Remove a run's drawn consensus maps (its finished detectors are about to change)."""
    storage.delete_prefix(storage.run_key(run_id, CONSENSUS))


def read_mask(key: str) -> np.ndarray:
    """A stored result mask (`render.mask_png`: 0 / 255) as a boolean array."""
    try:
        return _decode_gray(storage.read_bytes(key)) > 127
    except ValueError:  # not the 8-bit gray PNG the engine writes: the general decoder
        from inference.images import load_mask

        return load_mask(storage.read_bytes(key))[0]


def _is_consensus(parts: list[str]) -> bool:
    return (len(parts) == 4 and parts[0] == "runs" and parts[1].isdigit() and parts[2] == CONSENSUS
            and parts[3].endswith(".png") and parts[3][:-4].isdigit())  # fmt: skip


def _consensus(key: str) -> bytes | None:
    from experiments.models import Run
    from experiments.runs.selectors import consensus_mask_keys
    from inference.statistics import consensus_map

    _, run_id, _, name = key.split("/")
    run = Run.objects.filter(pk=int(run_id)).first()
    masks = [read_mask(mask_key) for mask_key in consensus_mask_keys(run, int(name[:-4]))] if run else []
    return render.heatmap_png(consensus_map(masks)) if len(masks) > 1 else None


def _heatmap(key: str) -> bytes | None:
    levels_key = _sibling(key, LEVELS)
    if not storage.exists(levels_key):
        return None
    return render.heatmap_levels_png(_decode_gray(storage.read_bytes(levels_key)))


def _error_map(key: str) -> bytes | None:
    from experiments.models import Result
    from experiments.runs.pair_inputs import load_pair_inputs
    from inference.images import load_mask

    mask_key = _sibling(key, MASK)
    result = Result.objects.filter(error_map_key=key).select_related("pair", "run__experiment").first()
    if result is None or not result.pair.label or not storage.exists(mask_key):
        return None
    alignment = result.run.alignments.filter(pair=result.pair).first() if result.run.experiment.align else None
    item = load_pair_inputs(result.pair, alignment)
    mask, _ = load_mask(storage.read_bytes(mask_key))
    return render.error_map_png(mask, item.label, item.valid)


def _decode_gray(data: bytes) -> np.ndarray:
    import cv2

    levels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if levels is None or levels.dtype != np.uint8 or levels.ndim != 2:
        raise ValueError("a stored probability map is not an 8-bit gray PNG")
    return levels


def _sibling(key: str, name: str) -> str:
    return f"{key.rsplit('/', 1)[0]}/{name}"
