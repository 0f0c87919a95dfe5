from django.apps import AppConfig


class RebuildSiteConfig(AppConfig):
    name = "rebuild_site"
    verbose_name = "Site"
