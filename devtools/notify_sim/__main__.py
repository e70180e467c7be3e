"""Run the Notify simulator until SIGTERM/SIGINT: `python -m devtools.notify_sim --port 6011`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from devtools.notify_sim.server import NotifySimulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.notify_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6011)
    parser.add_argument("--db", help="SQLite file to keep notifications in (default: a temporary file)")
    parser.add_argument("--service-id", help="service id (uuid) of the API key; random if omitted")
    parser.add_argument("--secret", help="secret (uuid) of the API key; random if omitted")
    parser.add_argument("--rate-limit", type=int, default=6000, help="requests per rolling minute")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sim = NotifySimulator(
        args.db,
        host=args.host,
        port=args.port,
        rate_limit_per_minute=args.rate_limit,
        service_id=args.service_id,
        secret=args.secret,
    )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    base_url = sim.start()
    # Printed (not logged) once, so whoever started the simulator can configure a client with it.
    print(f"Notify simulator: {base_url}", flush=True)
    print(f"API key: {sim.api_key}", flush=True)
    stopping.wait()
    sim.stop()


if __name__ == "__main__":
    main()
