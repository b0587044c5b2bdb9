from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views
from accounts.attempts import attempts_limited

app_name = "accounts"

urlpatterns = [
    path(
        "login/",
        attempts_limited(auth_views.LoginView.as_view(template_name="accounts/login.html")),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("sign-up/", attempts_limited(views.sign_up), name="sign_up"),
    path("token/", views.api_token, name="api_token"),
]
