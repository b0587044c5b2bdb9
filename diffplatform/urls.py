from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.attempts import attempts_limited
from diffplatform.health import healthz

urlpatterns = [
    path("healthz/", healthz, name="healthz"),
    # The admin's password forms count against the same authentication attempts as the log-in page.
    path("admin/login/", attempts_limited(admin.site.login)),
    path("admin/password_change/", attempts_limited(admin.site.admin_view(admin.site.password_change, cacheable=True))),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/v1/", include("experiments.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("experiments.urls")),
]
