"""Looking closely at a finished run: the pair gallery and one pair across all detectors."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from experiments import storage
from experiments.reporting import gallery
from experiments.reporting.leaderboard import detector_colours
from experiments.runs import selectors as run_selectors


def _run(request, pk):
    return get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)


@login_required
@require_GET
def run_gallery(request, pk):
    run = _run(request, pk)
    detectors = run.experiment.detectors
    state = gallery.GalleryState.from_query(request.GET, detectors)
    items = gallery.gallery_items(run, state)
    page = Paginator(items, gallery.GALLERY_PAGE_SIZE).get_page(state.page)
    return render(
        request,
        "experiments/run_gallery.html",
        {
            "run": run,
            "detectors": detectors,
            "colours": detector_colours(detectors),
            "state": state,
            "page": page,
            "total": len(items),
            "sorts": gallery.GALLERY_SORTS,
            "metrics": gallery.GALLERY_METRICS,
            "categories": gallery.gallery_categories(run),
            "query": state.query(page=1),
            "prev_query": state.query(page=page.previous_page_number()) if page.has_previous() else "",
            "next_query": state.query(page=page.next_page_number()) if page.has_next() else "",
        },
        status=400 if state.errors else 200,
    )


@login_required
@require_GET
def pair_detail(request, pk, pair_pk):
    run = _run(request, pk)
    pair = get_object_or_404(run.experiment.dataset.pairs, pk=pair_pk)
    detectors = run.experiment.detectors
    state = gallery.GalleryState.from_query(request.GET, detectors)
    state.errors = []
    items = gallery.gallery_items(run, state)
    previous, following, position = gallery.neighbours(items, pair.pk)
    alignment = gallery.pair_alignment(run, pair)
    view = {
        "b_width": pair.b_width,
        "b_height": pair.b_height,
        "a_url": storage.media_url(alignment.warped_a_key if alignment else pair.image_a),
        "b_url": storage.media_url(pair.image_b),
    }
    return render(
        request,
        "experiments/pair_detail.html",
        {
            "run": run,
            "pair": pair,
            "panels": gallery.pair_panels(run, pair),
            "alignment": alignment,
            "view": view,
            "legend": gallery.ERROR_LEGEND,
            "query": state.query(),
            "previous": previous,
            "following": following,
            "position": position,
            "total": len(items),
            "label_url": storage.media_url(pair.label),
            "consensus_url": gallery.consensus_url(run, pair),
        },
    )
