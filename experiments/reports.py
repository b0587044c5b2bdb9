"""Plain-text renderings of a leaderboard for the command line."""


def _fmt(value, digits=3):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def leaderboard_table(leaderboard: dict) -> str:
    """One line per detector: pooled IoU/F1, per-pair mean IoU with its 95% CI, latency, weights."""
    header = (
        f"{'detector':<24}{'pooled IoU':>11}{'pooled F1':>10}{'mean IoU':>10} {'95% CI':<18}"
        f"{'p50 ms':>8}{'p95 ms':>8}{'mem MB':>8}  weights"
    )
    lines = [header, "-" * len(header)]
    for row in leaderboard.get("detectors", []):
        pooled, means, cis = row.get("pooled", {}), row.get("per_pair_mean", {}), row.get("ci", {})
        lines.append(
            f"{row['detector']:<24}{_fmt(pooled.get('iou')):>11}{_fmt(pooled.get('f1')):>10}"
            f"{_fmt(means.get('iou')):>10} {_ci(cis.get('iou')):<18}{_fmt(row.get('latency_ms_p50'), 1):>8}"
            f"{_fmt(row.get('latency_ms_p95'), 1):>8}{_fmt(row.get('peak_memory_mb'), 1):>8}  {row.get('weights') or ''}"
        )
    if not leaderboard.get("labelled"):
        lines.append("No labels: IoU/F1 are not defined; see agreement between detectors:")
        lines += [
            f"  {r['a']} vs {r['b']}: mean mask IoU {_fmt(r['mean_iou'])}" for r in leaderboard.get("agreement", [])
        ]
    return "\n".join(lines)
