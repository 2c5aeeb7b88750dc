"""``sidecar run | check-config | --version``; ``python -m sidecar`` is the same program."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from sidecar import __version__
from sidecar.config import ConfigError, Settings, load_settings
from sidecar.core.own_logs import setup_logging
from sidecar.core.redaction import MASK, mask_url

EXIT_CONFIG = 2
EXIT_START = 1
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "dsn",
)


class _Version(argparse.Action):
    """``sidecar --version``: also says whether the gateway's hot path is compiled and its C head scanner
    built (see setup.py): both are optional, and a build without a compiler works, only slower."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from sidecar.gateway import compiled, native_heads  # noqa: PLC0415 (only this option loads the gateway)

        heads = "native head scanner" if native_heads() else "no native head scanner: llhttp reads every head"
        print(f"sidecar {__version__} (gateway: {'compiled' if compiled() else 'pure Python'}; {heads})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecar", description="Observability sidecar and metrics gateway.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "start the sidecar"),
        ("check-config", "validate the configuration and print it with secrets masked"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--config",
            type=Path,
            default=os.environ.get("SIDECAR_CONFIG") or None,
            help="YAML configuration file (default: $SIDECAR_CONFIG, else built-in defaults)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # an unknown SIDECAR_* variable fails check-config; run only warns (see load_settings)
        settings = load_settings(args.config, strict_environment=args.command == "check-config")
    except ConfigError as exc:
        print(f"sidecar: invalid configuration ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for field, message in exc.problems:
            print(f"  - {field}: {message}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(yaml.safe_dump(masked_config(settings), sort_keys=False), end="")
        return 0
    setup_logging(settings.log_level)
    from sidecar.server import run  # noqa: PLC0415  (keeps check-config light)

    try:
        return run(settings, args.config)
    except OSError as exc:  # a listener that cannot bind: say which, without a traceback
        logging.getLogger("sidecar").error("cannot start: %s", exc.strerror or exc)
        print(f"sidecar: cannot start: {exc}", file=sys.stderr)
        return EXIT_START


def masked_config(settings: Settings) -> dict[str, Any]:
    """The resolved configuration with every secret replaced, safe to paste into a ticket."""
    data = settings.model_dump()
    masked: dict[str, Any] = _mask(data)
    return masked


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str):
        if value and any(part in key.lower() for part in _SECRET_KEY_PARTS):
            return MASK
        if "://" in value:
            return mask_url(value)
    return value


if __name__ == "__main__":
    sys.exit(main())
