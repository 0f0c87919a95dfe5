"""Settings of the site, all read from the environment (see .env.example).

Development (DEBUG=1) works with no variable set: a secret key and a credentials key are
generated once under var/. Production (DEBUG unset or 0) refuses to start without
SECRET_KEY, ALLOWED_HOSTS and CREDENTIALS_KEY, and passes `manage.py check --deploy`.
"""

from __future__ import annotations

import secrets
import shutil
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from rebuild_site.environment import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    load_env_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
load_env_file(BASE_DIR)  # the checkout's .env, if any; the environment wins over it
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)


def _development_secret(filename: str, make: callable) -> str:
    """A secret kept under var/ so development sessions and restarts share it."""
    path = VAR_DIR / filename
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _development_secret("dev-secret-key", lambda: secrets.token_urlsafe(50))
elif not DEBUG and len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters long.")

# Fernet key that encrypts stored NSG passwords (models in nsg_app).
CREDENTIALS_KEY = env_str("CREDENTIALS_KEY")
if not CREDENTIALS_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY must be set when DEBUG is off. Make one with: "
            'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    CREDENTIALS_KEY = _development_secret(
        "dev-credentials-key", lambda: Fernet.generate_key().decode()
    )
# Several keys may be given, comma-separated, newest first (key rotation).
for _key in CREDENTIALS_KEY.split(","):
    try:
        Fernet(_key.strip().encode())
    except ValueError:
        raise ImproperlyConfigured(
            "CREDENTIALS_KEY must be a Fernet key (32 url-safe base64-encoded bytes), "
            "or several separated by commas."
        ) from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Repeated wrong logins lock that user name from that address for a while.
    "axes",
    "rebuild_site",
    "models_app",
    "nsg_app",
    "analysis_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a logged-in user; the login page opts out (login_not_required).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rebuild_site.timezones.UserTimezoneMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "rebuild_site.urls"
WSGI_APPLICATION = "rebuild_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL names another (PostgreSQL in production).
_default_database = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
_database_url = env_url(
    "DATABASE_URL", _default_database, schemes=("sqlite", "postgres", "postgresql", "pgsql")
)
try:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL is not usable: {error}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The worker and the web process write to the same file: wait rather than fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    # A file, not memory, so that a Celery worker started by the tests sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
if DATABASES["default"]["NAME"] in ("", None):
    raise ImproperlyConfigured("DATABASE_URL must name a database.")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: a locked-out login is refused here
    "django.contrib.auth.backends.ModelBackend",
]
# LOGIN_FAILURE_LIMIT wrong passwords for one user name from one address lock that pair
# out for LOGIN_LOCKOUT_MINUTES; a right password before that resets the count.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
AXES_VERBOSE = False  # no start-up banner in every manage.py command's output
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# Static files are served by WhiteNoise; Bootstrap is vendored under static/ and Plotly's
# bundle comes from the installed plotly package, so no page needs the internet.
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
import plotly  # noqa: E402

STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("plotly", Path(plotly.__file__).parent / "package_data"),
]

# Files: the local filesystem under var/media, or S3 when a bucket and an endpoint are set.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media"))).resolve()
MEDIA_URL = "media/"
S3_BUCKET = env_str("S3_BUCKET")
S3_ENDPOINT_URL = env_url("S3_ENDPOINT_URL", schemes=("http", "https"))
if bool(S3_BUCKET) != bool(S3_ENDPOINT_URL):
    raise ImproperlyConfigured("S3_BUCKET and S3_ENDPOINT_URL must be set together.")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": S3_ENDPOINT_URL,
            "access_key": env_str("S3_ACCESS_KEY_ID"),
            "secret_key": env_str("S3_SECRET_ACCESS_KEY"),
            "region_name": env_str("S3_REGION", "us-east-1"),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": "/media/"},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Large uploads and downloaded results wait here; on the same disk as var/media, the
# filesystem storage then moves them into place rather than copying them.
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", str(VAR_DIR / "tmp"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 200 * 1024 * 1024, minimum=1024)

# Celery with Redis as broker and result store.
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {}
# Local runs last up to LOCAL_MAX_RUNTIME_HOURS: they have a queue and a worker of their own
# (`make run` starts it; docker-compose's runner), so that polling, collection, analyses
# and the health check never wait behind them on the default queue.
RUNS_QUEUE = "runs"
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {"nsg_app.run_local_job": {"queue": RUNS_QUEUE}}

# NSG (the Neuroscience Gateway REST API, or the project's emulator).
NSG_BASE_URL = env_url(
    "NSG_BASE_URL", "https://nsgr.sdsc.edu:8443/cipresrest/v1", schemes=("http", "https")
)
NSG_APP_KEY = env_str("NSG_APP_KEY")
NSG_VERIFY_TLS = env_bool("NSG_VERIFY_TLS", True)
NSG_MIN_POLL_SECONDS = env_float("NSG_MIN_POLL_SECONDS", 60.0, minimum=0.0)
# How often beat looks for accounts due a poll and stale collections.
NSG_POLL_EVERY_SECONDS = env_float("NSG_POLL_EVERY_SECONDS", 15.0, minimum=0.2)
# A collection whose worker stopped reporting for this long is started again.
COLLECT_STALE_SECONDS = env_float("COLLECT_STALE_SECONDS", 300.0, minimum=1.0)
# The sweep queues a job's, analysis' or save's next step again when it is still not done
# this long after it was last queued (a lost message, a killed worker, a restart).
REDRIVE_AFTER_SECONDS = env_float("REDRIVE_AFTER_SECONDS", 300.0, minimum=1.0)
# BluePyOpt tools offered, with their cores-per-node cap: TOOL=CAP,TOOL=CAP.
NSG_TOOL_CORE_LIMITS = {}
for _item in env_list("NSG_TOOL_CORE_LIMITS", ["BLUEPYOPT_EXPANSE=24", "BLUEPYOPT_TG=24"]):
    _tool, _, _cap = _item.partition("=")
    if not _tool.strip() or not _cap.strip().isdigit() or int(_cap) < 1:
        raise ImproperlyConfigured(f"NSG_TOOL_CORE_LIMITS items must be TOOL=CORES; got {_item!r}")
    NSG_TOOL_CORE_LIMITS[_tool.strip()] = int(_cap)
CELERY_BEAT_SCHEDULE["poll-active-jobs"] = {
    "task": "nsg_app.poll_active_jobs",
    "schedule": NSG_POLL_EVERY_SECONDS,
}

# Sources of published optimisations ("Refresh from repository").
MODEL_REPOSITORY_URL = env_url(
    "MODEL_REPOSITORY_URL",
    "https://raw.githubusercontent.com/cnr-ibf-pa/bsp_data_repository/master/optimizations",
    schemes=("http", "https", "file"),
)
MODEL_REPOSITORY_INDEX_URL = env_url(
    "MODEL_REPOSITORY_INDEX_URL",
    "https://api.github.com/repos/cnr-ibf-pa/bsp_data_repository/contents/optimizations",
    schemes=("http", "https", "file"),
)

# Local runs: how many processes evaluate individuals in parallel (0: every core).
LOCAL_CORES = env_int("LOCAL_CORES", 0, minimum=0, maximum=1024)
# Local runs' work folders (unpacked package, STDOUT, STDERR, progress) before collection.
LOCAL_RUNS_DIR = Path(env_str("LOCAL_RUNS_DIR", str(VAR_DIR / "local-runs"))).resolve()
# Longest local run allowed, in hours (the form's runtime limit cannot exceed it).
LOCAL_MAX_RUNTIME_HOURS = env_float("LOCAL_MAX_RUNTIME_HOURS", 48.0, minimum=0.001)
# Local runs on an ipyparallel cluster instead of this machine's cores: the controller's
# client connection file (ipcontroller-client.json) or a profile folder holding it. Empty: the
# pool of local processes. `make run CLUSTER=N` sets it to the cluster it starts.
_local_cluster = env_str("LOCAL_CLUSTER", "").strip()
LOCAL_CLUSTER = Path(_local_cluster).expanduser().resolve() if _local_cluster else None
if LOCAL_CLUSTER is not None and not LOCAL_CLUSTER.exists():
    raise ImproperlyConfigured(
        f"LOCAL_CLUSTER names {LOCAL_CLUSTER}, which does not exist: give an ipyparallel "
        "client connection file (ipcontroller-client.json) or profile folder, or leave it empty."
    )
# Work folders of local runs are removed this many days after their results are stored
# (0: at the next sweep); keep them longer to look into a run.
KEEP_WORK_FOLDERS_DAYS = env_float("KEEP_WORK_FOLDERS_DAYS", 0.0, minimum=0.0)
# Compiled mechanisms, cached by a hash of the .mod files (local runs and analyses).
MECHANISMS_CACHE_DIR = Path(env_str("MECHANISMS_CACHE_DIR", str(VAR_DIR / "mechanisms"))).resolve()
# A model whose mechanisms still wait to compile this long after import (its task message
# was lost) is queued again by beat's sweep, which runs every few minutes.
MECHANISMS_REQUEUE_SECONDS = env_float("MECHANISMS_REQUEUE_SECONDS", 300.0, minimum=1.0)
CELERY_BEAT_SCHEDULE["requeue-mechanism-compiles"] = {
    "task": "models_app.requeue_mechanism_compiles",
    "schedule": min(60.0, MECHANISMS_REQUEUE_SECONDS),
}
# Analyses: their work folders, and the time one may take.
ANALYSIS_WORK_DIR = Path(env_str("ANALYSIS_WORK_DIR", str(VAR_DIR / "analyses"))).resolve()
ANALYSIS_TIMEOUT_SECONDS = env_int("ANALYSIS_TIMEOUT_SECONDS", 1800, minimum=10)
# The most an analysed result may unpack to, in bytes (in its work folder above): a few
# megabytes uploaded can decompress to gigabytes.
ANALYSIS_UNPACKED_MAX_BYTES = env_int(
    "ANALYSIS_UNPACKED_MAX_BYTES", 2 * 1024 * 1024 * 1024, minimum=1024 * 1024
)

# Model code (opt_neuron.py, model/*.py, checkpoints, .mod files) runs confined by
# bubblewrap: no network, no secrets, only its own run folder (models_app/bpo/sandbox.py).
# Turning it off is for a single-user machine whose user trusts every model: "off" in
# development; with DEBUG off only the value that names the risk is accepted.
SANDBOX_OFF_IN_PRODUCTION = "off-trust-all-models"
_sandbox = env_str("SANDBOX", "bwrap").lower()
if _sandbox == "bwrap":
    SANDBOX = "bwrap"
    if not DEBUG and shutil.which("bwrap") is None:
        raise ImproperlyConfigured(
            "SANDBOX=bwrap but bubblewrap is not installed (Debian: apt-get install "
            "bubblewrap). Model code must not run unconfined; to run it so anyway, on a "
            f"single-user machine that trusts every model, set SANDBOX={SANDBOX_OFF_IN_PRODUCTION}."
        )
elif _sandbox == SANDBOX_OFF_IN_PRODUCTION or (_sandbox == "off" and DEBUG):
    SANDBOX = "off"
elif _sandbox == "off":
    raise ImproperlyConfigured(
        "SANDBOX=off is refused when DEBUG is off: every model's code would run as the "
        "worker, with the site's secrets and database. Only on a single-user machine whose "
        f"user trusts every model, set SANDBOX={SANDBOX_OFF_IN_PRODUCTION}."
    )
else:
    raise ImproperlyConfigured(
        f"SANDBOX must be bwrap, off (DEBUG only) or {SANDBOX_OFF_IN_PRODUCTION}; got {_sandbox!r}"
    )
# An analysis or a save whose worker has not reported for this long (it reports every 5 s)
# is taken over by the next task the sweep queues.
ANALYSIS_STALE_SECONDS = env_int("ANALYSIS_STALE_SECONDS", 120, minimum=15)

# Security: strict settings whenever DEBUG is off (`manage.py check --deploy` is clean).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    if env_bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
