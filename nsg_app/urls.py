from django.urls import path

from nsg_app import views

app_name = "nsg_app"
urlpatterns = [
    path("", views.jobs, name="jobs"),
    path("status.json", views.jobs_status, name="jobs_status"),
    path("refresh/", views.jobs_refresh, name="refresh"),
    path("nsg-account/", views.account, name="account"),
    path("nsg-account/forget/", views.account_forget, name="account_forget"),
    path("run-nsg/<int:package_pk>/", views.submit_nsg, name="submit_nsg"),
    path("run-here/<int:package_pk>/", views.submit_local, name="submit_local"),
    path("run-cost/<int:package_pk>/", views.run_cost, name="run_cost"),
    path("<int:pk>/", views.job, name="job"),
    path("<int:pk>/status.json", views.job_status, name="job_status"),
    path("<int:pk>/check/", views.job_check, name="check"),
    path("<int:pk>/collect/", views.job_collect, name="collect"),
    path("<int:pk>/cancel/", views.job_cancel, name="cancel"),
    path("<int:pk>/delete/", views.job_delete, name="delete"),
    path("<int:pk>/files/<str:name>", views.job_file, name="file"),
]
