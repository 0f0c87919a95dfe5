from django.urls import path

from nsg_app import views

app_name = "nsg_app"
urlpatterns = [
    path("", views.jobs, name="jobs"),
    path("nsg-account/", views.account, name="account"),
]
