"""Settings come from the environment; bad values stop the start-up with a clear message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-production-secret-key-that-is-long-enough-0123456789",
    "ALLOWED_HOSTS": "rebuild.example.org",
    "CREDENTIALS_KEY": Fernet.generate_key().decode(),
    "DATABASE_URL": "sqlite:////tmp/rebuild-deploy-check.sqlite3",
}


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "CREDENTIALS_KEY",
            "DATABASE_URL",
            "S3_BUCKET",
            "S3_ENDPOINT_URL",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
            "SANDBOX",
        }
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_check():
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 50 characters"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must be set when DEBUG is off"),
        ({"CREDENTIALS_KEY": ""}, "CREDENTIALS_KEY must be set when DEBUG is off"),
        ({"CREDENTIALS_KEY": "not-a-key"}, "CREDENTIALS_KEY must be a Fernet key"),
        ({"DEBUG": "maybe"}, "DEBUG must be one of"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must start with one of"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL must start with one of"),
        ({"S3_BUCKET": "results"}, "S3_BUCKET and S3_ENDPOINT_URL must be set together"),
        ({"LOCAL_CORES": "many"}, "LOCAL_CORES must be a whole number"),
        (
            {"LOCAL_CLUSTER": "/nowhere/ipcontroller-client.json"},
            "LOCAL_CLUSTER names /nowhere/ipcontroller-client.json, which does not exist",
        ),
        ({"SANDBOX": "off"}, "SANDBOX=off is refused when DEBUG is off"),
        ({"SANDBOX": "none"}, "SANDBOX must be bwrap, off (DEBUG only) or off-trust-all-models"),
        ({"PATH": "/nowhere"}, "SANDBOX=bwrap but bubblewrap is not installed"),
    ],
)
def test_bad_values_are_refused_at_start_up(change, message):
    result = _manage(["check"], {**PRODUCTION, **change})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("environment", "sandbox"),
    [
        ({**PRODUCTION}, "bwrap"),
        ({**PRODUCTION, "SANDBOX": "off-trust-all-models"}, "off"),
        ({**PRODUCTION, "SANDBOX": "off-trust-all-models", "PATH": "/nowhere"}, "off"),
        ({"DEBUG": "1", "SANDBOX": "off"}, "off"),
    ],
)
def test_the_sandbox_is_on_unless_turned_off_by_a_value_that_names_the_risk(environment, sandbox):
    result = _manage(
        ["shell", "-c", "from django.conf import settings; print(settings.SANDBOX)"], environment
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == sandbox


def test_s3_storage_is_used_when_bucket_and_endpoint_are_set():
    env = {**PRODUCTION, "S3_BUCKET": "results", "S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
    result = _manage(
        [
            "shell",
            "-c",
            "from django.core.files.storage import default_storage as s; b = s.bucket_name; print(type(s._wrapped).__name__, b)",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "S3Storage results"
