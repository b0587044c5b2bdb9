"""The leakage audit on the pages: the dataset page's card (count and findings, paged), its
"audit now" button, and the run page's list of scored pairs a scored checkpoint trained on."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from experiments.datasets import leakage
from experiments.datasets import selectors as dataset_selectors
from experiments.reporting.contamination import scored_near_trained

FINDINGS_PER_PAGE = 25


def leakage_card(request, dataset) -> dict:
    """Context of `_leakage_card.html`: the summary and one page of findings (`?leak_page=`)."""
    findings = dataset_selectors.leakage_findings(dataset)
    page = Paginator(findings, FINDINGS_PER_PAGE).get_page(request.GET.get("leak_page"))
    return {"leakage": dataset_selectors.leakage_summary(dataset), "leak_page": page}


def run_leakage_card(run) -> dict:
    """Context of `_run_leakage_card.html` for a finished run."""
    return {"near_trained": scored_near_trained(run) if run.is_finished else []}


@login_required
@require_POST
def dataset_leakage_audit(request, pk):
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    leakage.leakage_audit(dataset=dataset)
    return redirect(reverse("experiments:dataset_detail", kwargs={"pk": dataset.pk}) + "#leakage")
