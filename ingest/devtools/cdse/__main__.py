"""``python -m ingest.devtools.cdse --root DIR [--port P]``: the CDSE-like provider in the foreground.

The first line on stdout is its base URL (as the local STAC provider's); requests are logged on
stderr. The fault options are the local provider's, plus the CDSE ones.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from ingest.devtools import provider
from ingest.devtools.cdse.faults import CdseFaults
from ingest.devtools.cdse.oidc import DEFAULT_USERS
from ingest.devtools.cdse.server import CdseServer

logger = logging.getLogger("ingest.devtools.cdse")


def _user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return name, password


def build_parser() -> argparse.ArgumentParser:
    p = provider.build_parser()  # --root --host --port --public-url and the shared fault knobs
    p.prog = "python -m ingest.devtools.cdse"
    p.description = "Serve a local provider root as the Copernicus Data Space serves its catalogue (OData, OpenID)."
    default_user = ", ".join(f"{u}:{pw}" for u, pw in DEFAULT_USERS.items())
    p.add_argument(
        "--user", type=_user, action="append", default=[], metavar="USER:PASSWORD", help=f"default {default_user}"
    )
    p.add_argument("--token-lifetime", type=float, default=600.0, help="access token lifetime, s (default 600)")
    p.add_argument("--refresh-lifetime", type=float, default=3600.0, help="refresh token lifetime, s (default 3600)")
    p.add_argument("--max-sessions", type=int, default=100, help="live sessions per user (default 100)")
    p.add_argument("--max-downloads", type=int, default=4, help="concurrent downloads per user (default 4)")
    p.add_argument("--offline", action="append", default=[], metavar="ID", help="product shown offline (repeatable)")
    p.add_argument("--status-429-rate", type=float, default=0.0, help="share of requests answered 429")
    p.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds on injected 429s")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        faults = CdseFaults.from_dict(
            {
                **provider.faults_from_args(args).to_dict(),
                "offline": list(args.offline),
                "status_429_rate": args.status_429_rate,
                "retry_after_s": args.retry_after,
            }
        )
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    args.root.mkdir(parents=True, exist_ok=True)
    try:
        server = CdseServer(
            args.root,
            host=args.host,
            port=args.port,
            faults=faults,
            public_url=args.public_url,
            users=dict(args.user) or None,
            access_lifetime_s=args.token_lifetime,
            refresh_lifetime_s=args.refresh_lifetime,
            max_sessions=args.max_sessions,
            max_downloads=args.max_downloads,
        )
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        parser.error(str(exc))

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        server.serve_forever()
    server.stop()
    logger.info("CDSE-like provider stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
