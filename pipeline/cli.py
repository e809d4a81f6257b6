"""The ``aiops`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pipeline.config import Settings, get_settings
from pipeline.logs import configure_logging, logging_config

class CommandError(Exception):
    """A failure the user can fix; printed as one line, exit code 2."""


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Faust worker with every agent; start more of them to scale out."""
    from pipeline.policy import PolicyFileError

    settings = get_settings()
    try:
        import agents  # noqa: F401  (importing registers the agents on the app)
        from pipeline.app import app
    except PolicyFileError as err:
        raise CommandError(f"bad policy file: {err}") from None
    _ensure_topics(settings)
    # Faust builds its own event loop from the current one: give it a fresh loop.
    asyncio.set_event_loop(asyncio.new_event_loop())

    from faust.worker import Worker

    worker = Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
    return 0


def _ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics (returns their names), or say what to do when Kafka is not there."""
    from aiokafka.errors import KafkaError

    from pipeline.topics import ensure_topics

    try:
        return asyncio.run(ensure_topics(settings))
    except KafkaError as err:
        raise CommandError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({err}); set AIOPS_KAFKA_BOOTSTRAP "
            "or start the local broker with `aiops kafka`"
        ) from None


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the missing aiops.* topics and list them all."""
    from pipeline.topics import ALL_TOPICS

    settings = get_settings()
    created = set(_ensure_topics(settings))
    for spec in ALL_TOPICS:
        mark = "created" if spec.name in created else "exists "
        print(f"{mark}  {spec.name:<26} {spec.config(settings)['cleanup.policy']:<8} {spec.description}")
    return 0


def cmd_kafka(args: argparse.Namespace) -> int:
    """Run the local development broker (Apache Kafka's own jars, KRaft) in the foreground."""
    from connectors import kafka_local

    return kafka_local.main(["--port", str(args.port)] + (["--data-dir", args.data_dir] if args.data_dir else []))


def cmd_demo(args: argparse.Namespace) -> int:
    """Local broker, worker and a small producer: watch samples flow and bad records reach the DLQ."""
    from pipeline.demo import run_demo

    return run_demo(get_settings())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiops", description="AI Ops Sentry: catch incidents in service metrics, fix them safely.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", help=cmd_worker.__doc__)
    worker.set_defaults(run=cmd_worker)

    topics = commands.add_parser("topics", help=cmd_topics.__doc__)
    topics.set_defaults(run=cmd_topics)

    kafka = commands.add_parser("kafka", help=cmd_kafka.__doc__)
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--data-dir", default=None, help="keep the broker's data here (default: a temporary dir)")
    kafka.set_defaults(run=cmd_kafka)

    demo = commands.add_parser("demo", help=cmd_demo.__doc__)
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        return args.run(args)
    except CommandError as err:
        print(f"aiops {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
