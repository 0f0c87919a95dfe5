from django.apps import AppConfig


class NsgAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "nsg_app"
    verbose_name = "Jobs and NSG"
