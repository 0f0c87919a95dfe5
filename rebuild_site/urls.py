from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from rebuild_site import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("health/", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("catalogue/", include("models_app.urls")),
    path("jobs/", include("nsg_app.urls")),
    path("analyses/", include("analysis_app.urls")),
]

admin.site.site_header = "Rebuild a hippocampal cell model: administration"
admin.site.site_title = "Rebuild SCM admin"
