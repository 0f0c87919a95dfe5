from django.urls import path

from analysis_app import views

app_name = "analysis_app"
urlpatterns = [
    path("", views.analyses, name="analyses"),
]
