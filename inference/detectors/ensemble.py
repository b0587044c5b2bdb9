"""Ensemble: a weighted mean of member detectors' probability maps.

``create_detector("ensemble", members=["absdiff", "ssim"], member_weights=[2, 1])``.
A member is a detector name, or a mapping with ``"name"`` and that member's own options for
``create_detector`` (``"weights"``: a checkpoint path, ``"auto"`` or ``None``; ``"input_size"``;
...), so each member can be built exactly as it would be alone:
``members=[{"name": "siamese-unet", "weights": "unet.pt", "input_size": 256}, "absdiff"]``.
The platform builds its ensembles this way (`experiments.plans`: an ensemble plan's members).

Without ``members`` the ensemble takes the classical detectors plus every learned detector
for which a *trained* checkpoint resolves under ``weights="auto"`` (the platform resolver or
an explicit path): a learned member with only an ImageNet backbone has a random decoder and
would add noise, so it joins only when named. ``weights`` is passed on to learned members
that do not name their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inference.builtin_detectors import ENSEMBLE_CLASSICAL_MEMBERS
from inference.detectors.base import Detector, DetectorInfo, Pair
from inference.registry import create_detector, get_spec, list_detectors

DEFAULT_CLASSICAL_MEMBERS = ENSEMBLE_CLASSICAL_MEMBERS

Member = str | Mapping


class EnsembleDetector(Detector):
    def __init__(self, name: str, members: Sequence[Detector], member_weights: Sequence[float]):
        if not members:
            raise ValueError("an ensemble needs at least one member detector")
        if len(member_weights) != len(members):
            raise ValueError(f"member_weights has {len(member_weights)} values for {len(members)} members")
        weights = np.asarray(member_weights, dtype=np.float64)
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("member_weights must be non-negative with a positive sum")
        self.members = list(members)
        self.member_weights = (weights / weights.sum()).tolist()
        self.info = self._describe(name)

    def _describe(self, name: str) -> DetectorInfo:
        provenances = {m.info.weights for m in self.members}
        devices = {m.info.device for m in self.members}
        return DetectorInfo(
            name=name,
            family="ensemble",
            learned=any(m.info.learned for m in self.members),
            params=sum(m.info.params for m in self.members),
            input_size=None,  # each member runs at its own size: see extra["members"]
            mean=None,
            std=None,
            weights=provenances.pop() if len(provenances) == 1 else "mixed",
            weights_sha256=None,
            device=devices.pop() if len(devices) == 1 else "mixed",
            extra={
                "members": [
                    {
                        "name": m.info.name,
                        "weight": w,
                        "weights": m.info.weights,
                        "weights_sha256": m.info.weights_sha256,
                        "input_size": m.info.input_size,
                        **({"scaling": m.info.extra["scaling"]} if "scaling" in m.info.extra else {}),
                    }
                    for m, w in zip(self.members, self.member_weights, strict=True)
                ]
            },
        )

    def set_scaling(self, scaling) -> EnsembleDetector:
        """Each member scales as it would alone (learned members resize or tile; the rest ignore it)."""
        for member, record in zip(self.members, self.info.extra["members"], strict=True):
            member.set_scaling(scaling)
            if "scaling" in member.info.extra:
                record["scaling"] = member.info.extra["scaling"]
        return self

    def predict_batch(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        combined = [None] * len(pairs)
        for member, weight in zip(self.members, self.member_weights, strict=True):
            for index, prob in enumerate(member.predict_batch(pairs)):
                scaled = prob * np.float32(weight)
                combined[index] = scaled if combined[index] is None else combined[index] + scaled
        return [np.clip(prob, 0.0, 1.0).astype(np.float32, copy=False) for prob in combined]


def default_members(weights) -> list[str]:
    """Classical detectors plus learned ones that have a trained checkpoint right now."""
    from inference.weights import WeightsError, WeightsUnavailable, resolve_weights

    members = list(DEFAULT_CLASSICAL_MEMBERS)
    if weights != "auto":
        return members
    for candidate in list_detectors():
        spec = get_spec(candidate)
        if not spec.learned or spec.family == "ensemble":
            continue
        try:
            source = resolve_weights(candidate, "auto", backbone=None)
        except (WeightsUnavailable, WeightsError):
            continue
        if source.kind == "checkpoint":
            members.append(candidate)
    return members


def _member_call(member: Member, weights) -> tuple[str, dict]:
    """``(name, create_detector options)`` of one member: a name takes the ensemble's ``weights``."""
    if isinstance(member, str):
        return member, {"weights": weights}
    options = dict(member)
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"an ensemble member given as a mapping needs a 'name', got {member!r}")
    options.setdefault("weights", weights)
    if options.get("input_size") is None:
        options.pop("input_size", None)  # the member's own default (checkpoint meta, else registry)
    return name, options


def build_ensemble(
    *,
    name,
    weights="auto",
    device="auto",
    members: Sequence[Member] | None = None,
    member_weights: Sequence[float] | None = None,
):
    """Weighted mean of member maps (default: absdiff + ssim + trained learned detectors)."""
    if weights not in ("auto", "random", None):
        raise ValueError("an ensemble takes weights='auto' or None; give members their own files")
    calls = [_member_call(m, weights) for m in (list(members) if members is not None else default_members(weights))]
    if any(member == name for member, _ in calls):
        raise ValueError("an ensemble cannot contain itself")
    detectors = [create_detector(member, device=device, **options) for member, options in calls]
    return EnsembleDetector(name, detectors, member_weights or [1.0] * len(detectors))
