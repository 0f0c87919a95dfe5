"""Start the NSG emulator: `python -m nsg_app.emulator --user alice:secret --appkey KEY`.

The first line on stdout is `NSG emulator listening on http://HOST:PORT/cipresrest/v1`,
so a test can start it with `--port 0` and read the port it got.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models_app.bpo.sandbox import BWRAP, MODES

from .faults import FAULT_KINDS, parse_fault_option
from .server import EmulatorConfig, create_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's options; shared with the `manage.py nsg_emulator` command."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="an NSG account (repeat for more)",
    )
    parser.add_argument("--appkey", required=True, help="the application key (cipres-appkey)")
    parser.add_argument(
        "--stage-seconds",
        type=float,
        default=2.0,
        help="pause before each job stage (default 2; 0 for tests)",
    )
    parser.add_argument(
        "--min-poll-seconds",
        type=int,
        default=60,
        help="minPollIntervalSeconds in job statuses (default 60, as NSG)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplies every job's runtime_ limit (e.g. 0.01: 0.1 h becomes 3.6 s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep jobs and results here, across restarts (default: a temporary folder)",
    )
    parser.add_argument(
        "--retention-days",
        type=float,
        default=28.0,
        help="delete finished jobs this long after submission (default 28, as NSG)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=1024.0,
        help="largest request body accepted (default 1024)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="USER:KIND[:name=value,...]",
        help=f"inject a fault; KIND is one of {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--enable-test-endpoints",
        action="store_true",
        help="serve /_emulator/faults and /_emulator/requests (tests only)",
    )
    parser.add_argument(
        "--sandbox",
        choices=MODES,
        default=None,
        help="how jobs' code runs: bwrap (confined; the default, or the SANDBOX setting "
        "under manage.py) or off (unconfined, as this user: only for code you trust)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")


def config_from_options(options: Mapping[str, Any]) -> EmulatorConfig:
    """Build the configuration from parsed options; ValueError names a bad one."""
    users = {}
    for item in options["user"]:
        name, sep, password = item.partition(":")
        if not sep or not name or not password:
            raise ValueError(f"--user wants NAME:PASSWORD, got {item!r}")
        if "." in name:
            raise ValueError(f"NSG user names may not contain '.': {name!r}")
        users[name] = password
    if not users:
        raise ValueError("give at least one --user NAME:PASSWORD")
    if options["stage_seconds"] < 0 or options["time_scale"] <= 0:
        raise ValueError("--stage-seconds must be >= 0 and --time-scale > 0")
    return EmulatorConfig(
        users=users,
        app_key=options["appkey"],
        host=options["host"],
        port=options["port"],
        stage_seconds=options["stage_seconds"],
        min_poll_seconds=options["min_poll_seconds"],
        time_scale=options["time_scale"],
        data_dir=options["data_dir"],
        enable_test_endpoints=options["enable_test_endpoints"],
        faults=[parse_fault_option(text) for text in options["fault"]],
        retention_days=options["retention_days"],
        max_upload_bytes=int(options["max_upload_mb"] * 1024 * 1024),
        sandbox=options.get("sandbox") or BWRAP,
    )


def serve(config: EmulatorConfig, *, verbose: bool = False) -> None:
    """Run until SIGINT or SIGTERM; running jobs are stopped, their state kept."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    server = create_server(config)
    print(f"NSG emulator listening on {server.base_url}", flush=True)

    def stop(signum, frame) -> None:
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.emulator.shutdown()
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsg_app.emulator", description=__doc__)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    serve(config, verbose=options["verbose"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
