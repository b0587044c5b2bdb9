"""Dataset pages: the list, one dataset's pairs, adding a pair."""

from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from experiments.datasets import selectors as dataset_selectors
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.pages.forms import BulkUploadForm, DatasetForm, PairUploadForm
from experiments.pages.leakage import leakage_card
from experiments.pages.predictions import prediction_card
from experiments.runs import selectors as run_selectors

PAIRS_PER_PAGE = 50


@login_required
@require_http_methods(["GET", "POST"])
def dataset_list(request):
    form = DatasetForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                dataset = dataset_services.dataset_create(owner=request.user, **form.cleaned_data)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return redirect("experiments:dataset_detail", pk=dataset.pk)
        status = 400
    datasets = dataset_selectors.datasets_listed_for(request.user)
    return render(request, "experiments/dataset_list.html", {"datasets": datasets, "form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_detail(request, pk):
    """The dataset's pairs (thumbnails, categories) and the upload forms; POST adds one pair."""
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    form = PairUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                dataset_services.pair_create(
                    dataset=dataset,
                    name=data["name"],
                    a_bytes=data["image_a"].read(),
                    b_bytes=data["image_b"].read(),
                    label_bytes=data["label"].read() if data["label"] else None,
                    category=data["category"],
                    split=data.get("split") or "",
                )
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Pair {data['name']!r} added.")
                return redirect("experiments:dataset_detail", pk=dataset.pk)
        status = 400
    category = request.GET.get("category", "")
    pairs = dataset.pairs.all()
    if "category" in request.GET:
        pairs = pairs.filter(category=category)
    page = Paginator(pairs.order_by("name", "pk"), PAIRS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "experiments/dataset_detail.html",
        {
            "dataset": dataset,
            "pairs": page.object_list,
            "page": page,
            "pair_total": dataset.pairs.count(),
            "filter_query": f"category={quote(category)}" if "category" in request.GET else "",
            "form": form,
            "bulk_form": BulkUploadForm(),
            "categories": dataset_selectors.dataset_categories(dataset),
            "category": category if "category" in request.GET else None,
            "runs": run_selectors.runs_visible_to(request.user).filter(experiment__dataset=dataset)[:10],
            **prediction_card(request, dataset),
            **leakage_card(request, dataset),
        },
        status=status,
    )
