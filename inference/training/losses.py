"""Training losses on change logits (``loss=`` of ``train_detector``).

- ``"bce-dice"``: binary cross-entropy plus soft Dice on the change logits;
- ``"triplet"``: the metric-learning loss of the thesis, in its pairwise (contrastive) form:
  BCE-Dice plus a batch-balanced contrastive term on patch embeddings from ``model.embed(x)``
  (N x C x h x w, L2-normalised per patch). Unchanged patches pull A's and B's embeddings
  together (``d^2``), changed patches push them at least ``CONTRASTIVE_MARGIN`` apart
  (``max(0, m - d)^2``), as in STANet's BCL. A strict anchor/positive/negative triplet needs two
  "after" patches per anchor, which a change pair does not have; the pairwise form learns the
  same metric. BCE-Dice stays in so the map head still trains. Only Siamese models that expose
  ``embed`` support it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONTRASTIVE_MARGIN = 1.0
CONTRASTIVE_WEIGHT = 0.5


def bce_dice_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice (pooled over the batch, smoothed by 1 pixel)."""
    bce = F.binary_cross_entropy_with_logits(logits, label)
    prob = torch.sigmoid(logits)
    intersection = (prob * label).sum()
    dice = 1.0 - (2.0 * intersection + 1.0) / (prob.sum() + label.sum() + 1.0)
    return bce + dice


def contrastive_patch_loss(
    embed_a: torch.Tensor,
    embed_b: torch.Tensor,
    label: torch.Tensor,
    margin: float = CONTRASTIVE_MARGIN,
) -> torch.Tensor:
    """Batch-balanced contrastive loss on L2-normalised patch embeddings (see module docstring).

    A patch is changed when more than half of its pixels are, unchanged when none is; mixed
    patches are ignored. Each of the two terms is averaged over its own patches.
    """
    a = F.normalize(embed_a.float(), dim=1)
    b = F.normalize(embed_b.float(), dim=1)
    distance = (a - b).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()  # N x h x w, in [0, 2]
    changed_fraction = F.adaptive_avg_pool2d(label, distance.shape[-2:])[:, 0]
    changed = changed_fraction > 0.5
    unchanged = changed_fraction == 0
    terms = []
    if unchanged.any():
        terms.append(distance[unchanged].pow(2).mean())
    if changed.any():
        terms.append(F.relu(margin - distance[changed]).pow(2).mean())
    if not terms:
        return distance.sum() * 0.0
    return sum(terms) / 2
