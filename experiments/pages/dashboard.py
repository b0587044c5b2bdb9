"""The dashboard and the live status chips it polls."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from experiments.datasets import selectors as dataset_selectors
from experiments.models import ACTIVE_RUN_STATES
from experiments.runs import selectors as run_selectors
from experiments.training import selectors as training_selectors


@login_required
def dashboard(request):
    own_runs = run_selectors.runs_visible_to(request.user).filter(experiment__owner=request.user)
    return render(
        request,
        "experiments/dashboard.html",
        {
            "datasets": dataset_selectors.datasets_listed_for(request.user),
            "experiments": run_selectors.experiments_visible_to(request.user).filter(owner=request.user)[:20],
            "runs": own_runs[:20],
            "active_count": own_runs.filter(state__in=ACTIVE_RUN_STATES).count(),
            "training_jobs": training_selectors.training_jobs_visible_to(request.user).filter(owner=request.user)[:10],
        },
    )


@login_required
@require_GET
def runs_status(request):
    """States of the user's recent runs and training jobs, for the dashboard's live status chips."""
    runs = run_selectors.runs_visible_to(request.user).filter(experiment__owner=request.user)[:50]
    jobs = training_selectors.training_jobs_visible_to(request.user).filter(owner=request.user)[:20]
    return JsonResponse(
        {
            "runs": [{"id": r.pk, "state": r.state, "done": r.progress_done, "total": r.progress_total} for r in runs],
            "training": [{"id": j.pk, "state": j.state, "stage": (j.progress or {}).get("stage", "")} for j in jobs],
        }
    )
