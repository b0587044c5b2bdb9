"""Comparing runs (`/compare/?runs=1,2` or `?detector=absdiff`) and the benchmark matrix (`/benchmarks/`)."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from experiments.errors import ServiceError
from experiments.reporting import benchmarks, comparison
from experiments.runs import selectors as run_selectors


def _baseline_id(request) -> int | None:
    value = request.GET.get("baseline", "").strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) < 2**63 else None


@login_required
@require_GET
def compare(request):
    detector = request.GET.get("detector", "").strip()[:100]
    runs_param = ",".join(request.GET.getlist("runs"))  # `runs=1,2` or, from the list's checkboxes, `runs=1&runs=2`
    context = {"detector": detector, "runs_param": runs_param, "columns": comparison.page_columns()}
    try:
        if runs_param:
            runs = comparison.runs_by_ids(request.user, comparison.parse_run_ids(runs_param))
        elif detector:
            runs = comparison.runs_of_detector(request.user, detector)
        else:
            runs = None
    except ValueError as exc:
        return render(request, "experiments/compare.html", context | {"error": str(exc)}, status=400)
    except ServiceError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from None
        return render(request, "experiments/compare.html", context | {"error": exc.message}, status=exc.status)
    if runs is None:
        context["recent"] = run_selectors.listed_runs(request.user).order_by("-created_at", "-pk")[:20]
        return render(request, "experiments/compare.html", context)
    same = request.GET.get("same_protocol", "") in ("1", "true", "on")
    data = comparison.compare_runs(runs, baseline_id=_baseline_id(request), detector=detector, same_protocol=same)
    context |= {"data": data, "runs_param": ",".join(str(r["id"]) for r in data["runs"])}
    return render(request, "experiments/compare.html", context)


@login_required
@require_GET
def benchmark_matrix(request):
    return render(request, "experiments/benchmarks.html", {"matrix": benchmarks.benchmark_matrix(request.user)})
