from django.urls import path

from analysis_app import views

app_name = "analysis_app"
urlpatterns = [
    path("", views.analyses, name="analyses"),
    path("compare/", views.compare_analyses, name="compare"),
    path("compare/figures.json", views.compare_figures, name="compare_figures"),
    path("compare/save/", views.compare_save, name="compare_save"),
    path("comparisons/<int:pk>/status.json", views.comparison_status, name="comparison_status"),
    path("comparisons/<int:pk>/files/<path:name>", views.comparison_file, name="comparison_file"),
    path("comparisons/<int:pk>/delete/", views.comparison_delete, name="comparison_delete"),
    path("<int:pk>/", views.analysis, name="analysis"),
    path("<int:pk>/status.json", views.analysis_status, name="status"),
    path("<int:pk>/figures.json", views.analysis_figures, name="figures"),
    path(
        "<int:pk>/figures/<str:name>.<str:kind>",
        views.analysis_figure_download,
        name="figure_download",
    ),
    path("<int:pk>/files/<path:name>", views.analysis_file, name="file"),
    path("<int:pk>/traces/<str:label>.zip", views.analysis_traces, name="traces"),
    path("<int:pk>/save/", views.analysis_save, name="save"),
    path("<int:pk>/delete/", views.analysis_delete, name="delete"),
]
