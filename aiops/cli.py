"""The ``aiops`` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

from connectors.kafka_admin import ensure_topics
from pipeline.config import Settings, get_settings
from pipeline.logs import configure_logging, logging_config
from pipeline.simulator import DEFAULT_SERVICES, WARM_HISTORY
from schemas import topics


class CommandError(Exception):
    """A failure the user can fix; printed as one line, exit code 2."""


Progress = Callable[[int, int | None], None]
"""``progress(done, total)``; ``total`` None when the end is unknown (standard input)."""


@contextmanager
def terminal_progress(description: str, unit: str) -> Iterator[Progress | None]:
    """A tqdm bar on stderr moved by ``progress(done, total)``, or None when stderr is not a terminal.

    In a log file or a pipe a bar is only carriage returns: there the summary line printed at the
    end says all. The bar is drawn at the first count, so a command refused before it starts leaves
    only its error; while the bar is up, log records go through tqdm so they do not tear it. Bytes
    (``unit="B"``) read as kB and MB; counts stay whole numbers.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bars: list[tqdm] = []

    def move(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(desc=description, total=total, unit=unit, unit_scale=unit == "B", file=sys.stderr))
        bar = bars[0]
        if total != bar.total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    with logging_redirect_tqdm():
        try:
            yield move
        finally:
            for bar in bars:
                bar.close()


def _say(message: str) -> None:
    """One line on stderr that leaves a progress bar, if one is drawn, whole below it."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def package_version() -> str:
    """The installed distribution's version: the one ``pip`` and bug reports speak of."""
    try:
        return version("aiops-sentry")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Faust worker with every agent; start more of them to scale out."""
    from agents.topology import build_app
    from pipeline.policy import PolicyFileError

    settings = get_settings()
    # Faust runs on the current event loop: give it a fresh one, made before anything binds to it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app = build_app(settings)
    except PolicyFileError as err:
        raise CommandError(f"bad policy file: {err}") from None
    except ValueError as err:
        raise CommandError(f"AIOPS_WORKER_AGENTS: {err}") from None
    _ensure_topics(settings, loop)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    from faust.worker import Worker

    worker = Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        redirect_stdouts=False,
    )
    # Faust's terminal spinner lowers the root logger to DEBUG at levels from WARNING up: every
    # debug record of Kafka's clients would then be built, only to be dropped by the handler.
    worker.spinner = None
    # Every sample allocates short-lived objects; with the default thresholds the collector keeps
    # walking the long-lived detector states too. Freeze what start-up built, collect young
    # objects less often, and old ones rarely: fewer passes over a heap that is mostly state.
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    worker.execute_from_commandline()
    return 0


def _ensure_topics(settings: Settings, loop: asyncio.AbstractEventLoop | None = None) -> list[str]:
    """Create the missing topics (returns their names), or say what to do when Kafka is not there.
    On ``loop`` when given (the worker's, which must stay open), else on a loop of its own."""
    from aiokafka.errors import KafkaError

    try:
        creating = ensure_topics(settings)
        return loop.run_until_complete(creating) if loop else asyncio.run(creating)
    except KafkaError as err:
        raise CommandError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({err}); set AIOPS_KAFKA_BOOTSTRAP "
            "or start the local broker with `aiops kafka`"
        ) from None


def cmd_gateway(args: argparse.Namespace) -> int:
    """Run the HTTP gateway and the operator dashboard (AIOPS_GATEWAY_HOST:AIOPS_GATEWAY_PORT)."""
    import functools

    from connectors.stores import open_store
    from gateway.auth import TokenConfigError
    from gateway.server import serve
    from pipeline.policy import PolicyFileError

    settings = get_settings()
    updates = {key: value for key, value in (("gateway_host", args.host), ("gateway_port", args.port)) if value}
    try:
        serve(settings.model_copy(update=updates), store_opener=functools.partial(open_store, settings))
    except TokenConfigError as err:
        raise CommandError(f"bad API token settings: {err}") from None
    except PolicyFileError as err:
        raise CommandError(f"bad policy file: {err}") from None
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the missing aiops.* topics and list them all."""
    settings = get_settings()
    created = set(_ensure_topics(settings))
    for spec in topics.ALL_TOPICS:
        mark = "created" if spec.name in created else "exists "
        print(f"{mark}  {spec.name:<26} {spec.config(settings)['cleanup.policy']:<8} {spec.description}")
    return 0


def cmd_kafka(args: argparse.Namespace) -> int:
    """Run the local development broker (Apache Kafka's own jars, KRaft) in the foreground."""
    from aiops import kafka_local

    return kafka_local.main(["--port", str(args.port)] + (["--data-dir", args.data_dir] if args.data_dir else []))


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline locally on a simulated fleet with injected incidents, until Ctrl-C."""
    from aiops.demo import run_demo

    configure_logging("WARNING", "text")  # the demo prints what the pipeline says; keep the rest quiet
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries while new topics elect leaders
    return run_demo(get_settings(), kafka_port=args.kafka_port)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish a simulated fleet to aiops.metrics: history first (warms the models), then live."""
    from datetime import UTC, datetime, timedelta

    from aiops.producer import MetricsProducer
    from pipeline.simulator import Fleet, Incident, publish_history, publish_live

    settings = get_settings()
    now = datetime.now(UTC)
    try:
        incidents = [Incident.parse(text, now) for text in args.incident]
    except ValueError as err:
        raise CommandError(str(err)) from None
    fleet = Fleet(
        services=tuple(args.services.split(",")), incidents=incidents, seed=args.seed, day_seconds=args.day_seconds
    )
    interval = timedelta(seconds=args.interval)
    until = now + timedelta(seconds=args.duration) if args.duration else None
    _ensure_topics(settings)

    async def run() -> None:
        async with MetricsProducer.from_settings(settings) as producer:
            with terminal_progress("backfill", " samples") as progress:
                history = await publish_history(
                    fleet, producer.send, now - timedelta(seconds=args.backfill), now, interval, progress
                )
            print(f"backfilled {history} samples ({args.backfill:g}s of history); now live", flush=True)
            await publish_live(fleet, producer.send, interval, until)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    """Publish metric samples from JSON lines or CSV (a file, or - for stdin) to aiops.metrics."""
    from aiops.producer import (
        BadLine,
        MetricsProducer,
        lines_with_progress,
        read_csv,
        read_json_lines,
        regular_file_size,
    )

    settings = get_settings()
    _ensure_topics(settings)
    stream = sys.stdin if args.input == "-" else open(args.input, newline="")  # noqa: SIM115
    fmt = args.format or ("csv" if args.input.endswith(".csv") else "jsonl")
    unit = "B" if regular_file_size(stream) is not None else " lines"

    async def run(progress: Progress | None) -> tuple[int, int]:
        lines = stream if progress is None else lines_with_progress(stream, progress)
        parsed = read_csv(lines) if fmt == "csv" else read_json_lines(lines)
        sent = bad = 0
        chunk = []
        async with MetricsProducer.from_settings(settings) as producer:
            for item in parsed:
                if isinstance(item, BadLine):
                    bad += 1
                    _say(f"{args.input}:{item.number}: {item.reason}")
                    continue
                chunk.append(item)
                if len(chunk) >= 5000:
                    sent += await producer.send(chunk)
                    chunk = []
            sent += await producer.send(chunk)
        return sent, bad

    with stream, terminal_progress("produce", unit) as progress:
        sent, bad = asyncio.run(run(progress))
    print(f"published {sent} samples to {settings.kafka_bootstrap}; {bad} bad lines skipped")
    return 1 if bad else 0


TAIL_TOPICS = {
    "anomalies": (topics.ANOMALIES,),
    "incidents": (topics.INCIDENTS,),
    "health": (topics.SERVICE_HEALTH,),
    "actions": (topics.ACTION_REQUESTS, topics.ACTION_RESULTS),
    "dlq": (topics.METRICS_DLQ,),
}


def cmd_tail(args: argparse.Namespace) -> int:
    """Print events as they arrive, one JSON object per line: anomalies, health, actions or dlq."""
    from connectors.kafka_client import kafka_access

    settings = get_settings()

    async def run() -> None:
        consumer = kafka_access(settings).consumer(
            *(spec.name for spec in TAIL_TOPICS[args.stream]),
            auto_offset_reset="earliest" if args.from_beginning else "latest",
        )
        await consumer.start()
        try:
            async for record in consumer:
                if args.service and (record.key or b"").decode() != args.service:
                    continue
                print(f'{{"topic": "{record.topic}", "event": {record.value.decode(errors="replace")}}}', flush=True)
        finally:
            await consumer.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Replay timestamp,value CSV series (a file or a folder tree) through a detector; write its scores."""
    from pathlib import Path

    from pipeline.backtest import run_backtest

    source = Path(args.input)
    if not source.exists():
        raise CommandError(f"no such file or folder: {source}")
    try:
        with terminal_progress("backtest", " points") as progress:
            detector = args.detector or get_settings().detector
            result = run_backtest(source, Path(args.out), detector, args.warmup, progress)
    except ValueError as err:
        raise CommandError(str(err)) from None
    print(f"scored {result.points} points of {result.files} series in {result.seconds:.1f}s into {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiops", description="AI Ops Sentry: catch incidents in service metrics, fix them safely."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", help=cmd_worker.__doc__)
    worker.set_defaults(run=cmd_worker)

    gateway = commands.add_parser("gateway", help=cmd_gateway.__doc__)
    gateway.add_argument("--host", default=None, help="listen address (default: AIOPS_GATEWAY_HOST)")
    gateway.add_argument("--port", type=int, default=None, help="listen port (default: AIOPS_GATEWAY_PORT)")
    gateway.set_defaults(run=cmd_gateway)

    topics = commands.add_parser("topics", help=cmd_topics.__doc__)
    topics.set_defaults(run=cmd_topics)

    kafka = commands.add_parser("kafka", help=cmd_kafka.__doc__)
    kafka.add_argument("--port", type=int, default=9092)
    kafka.add_argument("--data-dir", default=None, help="keep the broker's data here (default: a temporary dir)")
    kafka.set_defaults(run=cmd_kafka)

    simulate = commands.add_parser("simulate", help=cmd_simulate.__doc__)
    simulate.add_argument("--services", default=",".join(DEFAULT_SERVICES), help="comma separated service names")
    simulate.add_argument("--interval", type=float, default=1.0, help="seconds between samples of a metric")
    simulate.add_argument(
        "--backfill",
        type=float,
        default=WARM_HISTORY.total_seconds(),
        help="seconds of history published at start (default: enough for the default detector to learn)",
    )
    simulate.add_argument("--duration", type=float, default=0.0, help="seconds of live samples; 0: until Ctrl-C")
    simulate.add_argument(
        "--incident",
        action="append",
        default=[],
        metavar="KIND:SERVICE:AT:DURATION",
        help="inject an incident AT seconds after the start for DURATION seconds; KIND is latency_spike, "
        "error_burst, cpu_saturation or memory_leak (repeatable)",
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--day-seconds", type=float, default=86_400.0, help="length of the simulated daily cycle")
    simulate.set_defaults(run=cmd_simulate)

    produce = commands.add_parser("produce", help=cmd_produce.__doc__)
    produce.add_argument("input", help="file with samples, or - for standard input")
    produce.add_argument("--format", choices=("jsonl", "csv"), help="default: csv for *.csv files, else jsonl")
    produce.set_defaults(run=cmd_produce)

    tail = commands.add_parser("tail", help=cmd_tail.__doc__)
    tail.add_argument("stream", choices=sorted(TAIL_TOPICS))
    tail.add_argument("--from-beginning", action="store_true", help="start with the oldest event kept")
    tail.add_argument("--service", help="only this service's events")
    tail.set_defaults(run=cmd_tail)

    backtest = commands.add_parser("backtest", help=cmd_backtest.__doc__)
    backtest.add_argument("input", help="a timestamp,value CSV file or a folder of them (searched recursively)")
    backtest.add_argument("--out", required=True, help="folder for the timestamp,anomaly_score files (same layout)")
    backtest.add_argument("--detector", default=None, help="detector name (default: AIOPS_DETECTOR)")
    backtest.add_argument("--warmup", type=int, default=0, help="first points scored 0, like the pipeline's warm-up")
    backtest.set_defaults(run=cmd_backtest)

    demo = commands.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument(
        "--kafka-port",
        type=int,
        default=9092,
        help="port of the demo's own broker (when AIOPS_KAFKA_BOOTSTRAP is unset)",
    )
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
