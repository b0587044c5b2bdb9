"""What a run measured per detector (speed, memory, where it ran) and how a leaderboard row sums it up.

The engine (`experiments.runs.engine`) measures; this module keeps the per-detector record in
`Run.environment["detector_info"][name]` and turns it, with the detector's results, into the
leaderboard row's measurement fields. It imports no torch.

- Maps: the pairs that miss the result cache are computed in batches of the engine's batch size
  (8); in eval mode a pair's map does not depend on the other pairs of its batch (equal to its
  batch-1 map up to float rounding, about 1e-6; tested).
- Latency: up to `LATENCY_SAMPLES` (10) pairs per detector task, evenly spread over its pairs,
  are predicted alone (batch 1), warm (one untimed call after loading), inputs already decoded,
  bracketed by a CUDA synchronise; their milliseconds are their `Result.latency_ms` (the other
  results have none). The row's p50/p95 are over the pairs timed in this run (`n_timed`):
  results served from the result cache keep the figures of the run that computed them but are
  left out of every latency, memory and throughput figure.
- Throughput: pairs per second of the `predict_batch` calls that compute the maps, on the run's
  own decoded inputs at `throughput_batch_size` (the engine's batch size unless no batch of that
  many pairs was computed); up to a few calls per detector task are timed, each only once its
  batch shape was seen (the first call at a shape is untimed); the row gives sum(pairs) /
  sum(seconds) over those timed batches.
- Worker peak RSS (`peak_memory_mb`): `inference.memory` (one meter) around the timed pairs, the whole
  worker process included; `memory_kind` and `memory_device` say which figure.
- Model memory (`model_memory_mib`): the detector's own (`inference.memory_probe`: weights plus one
  batch-1 prediction, in a fresh process on the CPU), measured once per weights, size and device and
  cached, so a run served from the cache has it too; `weights_mib` is its parameters' and buffers' bytes.
- An ensemble: `members` lists each member as the engine built it (name, mixing weight, weights
  provenance and sha256, input size and its source, device, precision, FLOPs); the row carries it
  as it is (`None` for other detectors).
"""

from inference.statistics import percentile

LATENCY_BATCH_SIZE = 1
LATENCY_SAMPLES = 10  # pairs per detector task predicted alone for their latency


def add_to_record(record: dict, worker: dict, pairs: int, samples: list[dict]) -> dict:
    """Count `pairs` computed by `worker` and add throughput `samples` to a detector's record.

    `workers` lists every worker that computed pairs of this detector in this run, with how many;
    `worker` is the one that computed the most (the only one, unless a retried or redelivered
    task ran elsewhere)."""
    record.setdefault("throughput_samples", []).extend(samples)
    if pairs <= 0:  # nothing stored (the batch failed after its timing): no worker to credit
        return record
    workers = record.setdefault("workers", [])
    for known in workers:
        if {k: v for k, v in known.items() if k != "pairs"} == worker:
            known["pairs"] += pairs
            break
    else:
        workers.append({**worker, "pairs": pairs})
    busiest = max(workers, key=lambda w: w["pairs"])
    record["worker"] = {k: v for k, v in busiest.items() if k != "pairs"}
    return record


def throughput(samples: list[dict]) -> dict:
    """Pairs/s of the timed batches at the largest batch size timed (smaller ones are left out)."""
    if not samples:
        return {"throughput_pairs_per_s": None, "throughput_batch_size": None, "throughput_batches": 0,
                "throughput_peak_memory_mb": None}  # fmt: skip
    size = max(s["batch_size"] for s in samples)
    chosen = [s for s in samples if s["batch_size"] == size]
    seconds = sum(s["seconds"] for s in chosen)
    memories = [s["peak_memory_mb"] for s in chosen if s.get("peak_memory_mb") is not None]
    return {
        "throughput_pairs_per_s": size * len(chosen) / seconds if seconds > 0 else None,
        "throughput_batch_size": size,
        "throughput_batches": len(chosen),
        "throughput_peak_memory_mb": max(memories) if memories else None,
    }


def measurement_fields(results, record: dict) -> dict:
    """The leaderboard row's latency, memory, throughput, hardware and input-size fields (and an
    ensemble's members)."""
    timed = [r for r in results if not r.from_cache and r.latency_ms is not None]
    latencies = [r.latency_ms for r in timed]
    memories = [r.peak_memory_mb for r in timed if r.peak_memory_mb is not None]
    return {
        "n_timed": len(timed),
        "latency_batch_size": LATENCY_BATCH_SIZE,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "peak_memory_mb": max(memories) if memories else None,
        "memory_kind": record.get("memory_kind") if memories else None,
        "memory_device": record.get("memory_device") if memories else None,
        "model_memory_mib": record.get("model_memory_mib"),
        "model_memory_kind": record.get("model_memory_kind"),
        "weights_mib": record.get("weights_mib"),
        **throughput(record.get("throughput_samples") or []),
        "input_size": record.get("input_size"),
        "input_size_source": record.get("input_size_source"),
        "precision": record.get("precision"),
        "device": record.get("device"),
        "worker": record.get("worker") if timed else None,
        "members": record.get("members"),
    }
