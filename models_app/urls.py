from django.urls import path

from models_app import views

app_name = "models_app"
urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("upload/", views.upload, name="upload"),
    path("refresh/", views.refresh, name="refresh"),
    path("refresh/<int:pk>/", views.refresh_status, name="refresh_status"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/publish/", views.publish, name="publish"),
    path("<int:pk>/delete/", views.upload_delete, name="delete"),
    path("<int:pk>/parameters/", views.save_parameters, name="save_parameters"),
    path("<int:pk>/package/", views.create_package, name="create_package"),
    path("<int:pk>/source/", views.source, name="source"),
    path("<int:pk>/continue/", views.continue_published, name="continue"),
    path("continue-job/<int:job_pk>/", views.continue_job, name="continue_job"),
    path("packages/<int:pk>/download/", views.package_download, name="package_download"),
]
