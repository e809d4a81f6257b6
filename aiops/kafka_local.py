"""A real single-node Apache Kafka broker (KRaft mode) for development and tests.

Why a real broker: the pipeline's failure modes (partitioning, consumer-group rebalances,
acks, offsets) live in Kafka itself, so fakes would hide them. Why not only Docker: many dev
machines and CI runners have a JVM but no Docker daemon, so this runs Kafka's own jars,
fetched once from Maven Central with ``aiops/kafka/pom.xml``, on the local JVM.

    with LocalKafka() as kafka:
        produce_to(kafka.bootstrap)   # "127.0.0.1:<free port>"

CLI (foreground until Ctrl-C / SIGTERM)::

    python -m aiops.kafka_local [--port 9092] [--data-dir DIR] [--fetch-only]

Needs ``java`` (17+) and, for the first fetch of a version, ``mvn``.

``LocalKafka(users={"worker": "secret", ...})`` starts it secured as a managed Kafka is: one
SASL_SSL listener (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512) with a certificate made at start
(:attr:`LocalKafka.cafile` verifies it), a TLS listener that takes client certificates instead
(:meth:`LocalKafka.client_certificate`), KRaft's ``StandardAuthorizer`` denying whatever no ACL
allows, and the super user ``admin`` (:attr:`LocalKafka.admin_security`). The users get their
SCRAM credentials through Kafka's admin API once the broker is up; their ACLs are the caller's
(:mod:`connectors.kafka_acls`). The controller listener is SASL_SSL too, with PLAIN, since a
controller cannot read SCRAM credentials from the metadata it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from connectors.kafka_client import KafkaAccess, KafkaSecurity
from pipeline.config import get_settings

__all__ = ["KAFKA_VERSION", "LocalKafka", "LocalKafkaError", "ensure_jars", "free_port", "main"]

log = logging.getLogger("aiops.kafka_local")

KAFKA_VERSION: str = get_settings().kafka_version
"""The Kafka release to run (``AIOPS_KAFKA_VERSION``); the pom's own default is only for hand-run mvn."""

_HOST = "127.0.0.1"
ADMIN = "admin"
"""The secured broker's super user, which is also the identity the broker logs in to itself with."""
_POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
_BROKER_LOG = "broker.log"
_FETCH_TIMEOUT_S = 900.0
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Broker logs go to the JVM's stdout, which start() sends to <data dir>/broker.log; INFO keeps
# startup and topic changes visible there without per-request noise. Log4j's own shutdown hook
# is off so that Kafka's clean-shutdown messages, logged from Kafka's hook, still get written.
_LOG4J2_PROPERTIES = """\
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.requestchannel.name = kafka.network.RequestChannel$
logger.requestchannel.level = WARN
"""


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched or started; the message says what to do about it."""


def _cache_root() -> Path:
    return get_settings().cache_dir


def _java() -> str:
    """Find the JVM the same way Kafka's own scripts do: JAVA_HOME first, then PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise LocalKafkaError(
            "`java` not found: the local Kafka broker needs a Java 17+ runtime "
            "(Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`), "
            "or point the code at an existing broker with AIOPS_KAFKA_BOOTSTRAP (tests: KAFKA_BOOTSTRAP)."
        )
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tail(text: str, lines: int = 40) -> str:
    # Some Maven builds emit colour resets even in batch mode; they garble an error message.
    return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])


_ERROR_LINE = re.compile(r"\] (ERROR|FATAL) |^[\w.$]+(Exception|Error): ")


def _errors(text: str) -> str:
    """The error and exception lines of a log excerpt, so the cause leads the message."""
    found = [line for line in text.splitlines() if _ERROR_LINE.search(line)][:4]
    return "".join(f"\n  {line}" for line in found)


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return a directory holding Kafka ``version``'s broker jars, fetching them with Maven once.

    Maven resolves exactly the dependency set Kafka publishes, so no jar list is kept by hand.
    The result is cached per version under ``AIOPS_CACHE_DIR`` (default ~/.cache/aiops-sentry);
    the fetch fills a temporary directory that is renamed into place only when complete, so an
    interrupted fetch is never mistaken for a finished one.
    """
    _java()  # the jars are no use without a JVM: say so before a long download
    lib = _cache_root() / f"kafka-{version}" / "lib"
    marker = f"kafka_2.13-{version}.jar"
    if (lib / marker).is_file():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            f"`mvn` not found: it is needed once to fetch the Kafka {version} jars from Maven Central "
            "(Debian/Ubuntu: `apt-get install maven`; macOS: `brew install maven`), "
            "or point the code at an existing broker with AIOPS_KAFKA_BOOTSTRAP (tests: KAFKA_BOOTSTRAP)."
        )
    lib.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="lib.partial-", dir=lib.parent))
    cmd = [
        mvn, "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}", "-DincludeScope=runtime", f"-Dkafka.version={version}",
    ]  # fmt: skip
    log.info("kafka.fetch version=%s lib=%s", version, lib, extra={"kafka_version": version, "lib": str(lib)})
    started = time.monotonic()
    try:
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=_FETCH_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        _discard(partial)
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output or ""
        raise LocalKafkaError(
            f"fetching the Kafka {version} jars with Maven took over {_FETCH_TIMEOUT_S:.0f}s; "
            f"is Maven Central reachable?\n{_tail(output)}"
        ) from exc
    except BaseException:  # Ctrl-C mid-download: leave no partial directory behind
        _discard(partial)
        raise
    if result.returncode != 0 or not (partial / marker).is_file():
        _discard(partial)
        raise LocalKafkaError(
            f"fetching the Kafka {version} jars with Maven failed (exit {result.returncode}); "
            f"is Maven Central reachable and is {version} a released Kafka version?\n"
            f"$ {' '.join(cmd)}\n{_tail(result.stdout)}"
        )
    if lib.exists() and not (lib / marker).is_file():
        shutil.rmtree(lib)  # a stale, incomplete directory from before fetches were atomic
    try:
        partial.rename(lib)
    except OSError:
        # Another process completed the same fetch first; its copy is as good as ours.
        shutil.rmtree(partial, ignore_errors=True)
        if not (lib / marker).is_file():
            raise
    elapsed = time.monotonic() - started
    log.info(
        "kafka.fetched version=%s seconds=%.1f", version, elapsed,
        extra={"kafka_version": version, "seconds": round(elapsed, 1)},
    )  # fmt: skip
    return lib


def _discard(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    with contextlib.suppress(OSError):  # leave no empty kafka-<bad version> dir in the cache
        partial.parent.rmdir()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The OS picks it, so parallel test sessions don't collide. Another process could still take
    it before the broker binds; start() then fails with the broker's own bind error.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR as the JVM sets it, so a port lingering in TIME_WAIT is not reported busy.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return True
    return False


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding, like kafka-storage
    random-uuid makes. One starting with '-' is drawn again, as Kafka's own Uuid.randomUuid does,
    since the format tool's argument parser would take it for an option (1 in 64 draws)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGTERM the broker when this process dies (Linux only).

    atexit does not run when Python is SIGKILLed or crashes; without this a test run killed by a
    CI timeout would leave a JVM holding ports and memory. The kernel ties the signal to the
    *thread* that forked, so it is only armed from the main thread, which lives as long as the
    process; from other threads atexit is the only guard.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: no dlopen after fork
    except (OSError, AttributeError):
        return None
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


async def _probe(access: KafkaAccess, timeout: float) -> None:
    """Succeed only once the broker serves metadata that lists a live broker and a controller.

    An open port is not enough: the socket listens before the node has registered and been
    unfenced, and topic creation fails until then.
    """
    admin = access.admin(client_id="aiops-kafka-local-probe", request_timeout_ms=max(1000, int(timeout * 1000)))
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    if not cluster.get("brokers") or cluster.get("controller_id", -1) < 0:
        raise LocalKafkaError(f"metadata lists no live broker/controller yet: {cluster}")


class LocalKafka:
    """One KRaft broker+controller JVM on 127.0.0.1, owned by this Python process.

    Without ``data_dir`` the broker keeps its data in a temporary directory that stop() removes,
    so every test session starts from an empty cluster; with ``data_dir`` topics and offsets
    persist across runs. The JVM runs in its own session (a Ctrl-C meant for us does not reach
    it before we stop it cleanly) and is stopped at interpreter exit, or by the kernel if this
    process is killed (Linux).
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version
        self.users = dict(users) if users is not None else None
        self._admin_password = secrets.token_urlsafe(16)
        self._requested_port = port
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._owns_data_dir = False
        self._port: int | None = None
        self._tls_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output begins in a reused data dir's broker.log

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers``."""
        if self._port is None or self._proc is None:
            raise LocalKafkaError("LocalKafka is not started: call start() or use it as a context manager")
        return f"{_HOST}:{self._port}"

    @property
    def secure(self) -> bool:
        return self.users is not None

    @property
    def cafile(self) -> Path | None:
        """The CA certificate (PEM) that signed a secured broker's certificate."""
        return self._data_dir / "tls" / "ca.pem" if self.secure and self._data_dir is not None else None

    @property
    def tls_bootstrap(self) -> str:
        """A secured broker's second listener: TLS, where a client certificate is the credential."""
        if self._tls_port is None:
            raise LocalKafkaError("only a secured, started broker has a TLS listener")
        return f"{_HOST}:{self._tls_port}"

    def client_certificate(self, user: str) -> KafkaSecurity:
        """How ``user`` connects to :attr:`tls_bootstrap` with a certificate of its own (mutual TLS);
        the broker takes the certificate's common name for the user, so its ACLs are the same."""
        if not self.secure or self._data_dir is None:
            raise LocalKafkaError("this broker is not secured and started: start it with users=")
        certfile, keyfile = _client_certificate(self._data_dir / "tls", user)
        return KafkaSecurity("SSL", cafile=str(self.cafile), certfile=str(certfile), keyfile=str(keyfile))

    def security(self, user: str, password: str | None = None, mechanism: str = "SCRAM-SHA-512") -> KafkaSecurity:
        """How ``user`` connects to this secured broker (its password from ``users`` unless given)."""
        if not self.secure:
            raise LocalKafkaError("this broker is not secured: start it with users=")
        assert self.users is not None
        secret = password if password is not None else self._admin_password if user == ADMIN else self.users[user]
        return KafkaSecurity("SASL_SSL", mechanism, user, secret, cafile=str(self.cafile))

    @property
    def admin_security(self) -> KafkaSecurity:
        """The super user's: it may do anything, ACLs and credentials included."""
        return self.security(ADMIN)

    def access(self, security: KafkaSecurity | None = None) -> KafkaAccess:
        """Clients of this broker: plaintext, or on a secured one the super user's unless ``security`` is given."""
        return KafkaAccess(self.bootstrap, security or (self.admin_security if self.secure else KafkaSecurity()))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        """The broker's own log (and JVM output); look here when the broker misbehaves."""
        return self._data_dir / _BROKER_LOG if self._data_dir is not None else None

    def start(self, timeout: float = 60.0) -> str:
        """Start the broker and return its bootstrap address once it really serves requests.

        ``timeout`` bounds the broker's startup; the one-time jar fetch before it is bounded
        separately. On failure the JVM is stopped and the error carries the broker log's tail.
        """
        if self.running:
            return self.bootstrap
        port = self._requested_port
        if port is not None and _port_in_use(port):
            raise LocalKafkaError(
                f"port {port} on {_HOST} is already in use, so a local Kafka broker cannot listen there. "
                f"Stop whatever holds it, choose another port (--port / LocalKafka(port=...)), or, if a "
                f"Kafka broker already runs there, use it instead: AIOPS_KAFKA_BOOTSTRAP={_HOST}:{port} "
                f"(tests: KAFKA_BOOTSTRAP={_HOST}:{port})."
            )
        lib = ensure_jars(self.version)
        java = _java()
        port = port if port is not None else free_port()
        controller_port = free_port()
        while controller_port == port:
            controller_port = free_port()
        self._tls_port = free_port() if self.secure else None
        while self._tls_port in (port, controller_port):
            self._tls_port = free_port()
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="aiops-kafka-"))
            self._owns_data_dir = True
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._port = port
        started = time.monotonic()
        try:
            config = self._write_config(port, controller_port)
            self._format(java, lib, config, timeout)
            self._spawn(java, lib, config)
            self._wait_ready(started + timeout, timeout)
            if self.users:
                self._run_async(self._add_users(), timeout)
        except BaseException:
            self.stop()
            raise
        elapsed = time.monotonic() - started
        log.info(
            "kafka.ready bootstrap=%s pid=%s seconds=%.1f log=%s", self.bootstrap, self.pid, elapsed, self.log_path,
            extra={"bootstrap": self.bootstrap, "pid": self.pid, "seconds": round(elapsed, 1)},
        )  # fmt: skip
        return self.bootstrap

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the JVM (SIGTERM for a clean shutdown, SIGKILL after ``timeout``); idempotent.

        Removes the data directory if it was a temporary one made by start().
        """
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("kafka.kill pid=%s after=%.0fs", proc.pid, timeout, extra={"pid": proc.pid})
                proc.kill()
                proc.wait(10)
            log.info("kafka.stopped pid=%s code=%s", proc.pid, proc.returncode, extra={"pid": proc.pid})
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir, self._owns_data_dir = None, False
        self._port = self._tls_port = None

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------

    def _write_config(self, port: int, controller_port: int) -> Path:
        assert self._data_dir is not None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{_HOST}:{controller_port}",
            "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._data_dir / "logs"),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # The project creates its topics explicitly; a typo must fail, not make a new topic.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
        }
        if self.secure:
            props |= self._security_props(port, controller_port)
        (self._data_dir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
        config = self._data_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        return config

    def _jvm(self, java: str, lib: Path, heap: str) -> list[str]:
        assert self._data_dir is not None
        return [
            java, f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._data_dir / 'log4j2.properties'}", "-cp", f"{lib}/*",
        ]  # fmt: skip

    def _format(self, java: str, lib: Path, config: Path, timeout: float) -> None:
        """Write the KRaft cluster metadata, once per data directory (a reused one keeps its id)."""
        assert self._data_dir is not None
        if (self._data_dir / "logs" / "meta.properties").is_file():
            return
        cluster_id = _cluster_id()
        # C1 only: this JVM lives ~2 s, too short for the optimizing compiler to pay off.
        jvm = [*self._jvm(java, lib, "256m"), "-XX:TieredStopAtLevel=1"]
        cmd = [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)]
        if self.secure:  # the super user can log in with SCRAM too; other users come through the admin API
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                cmd += ["--add-scram", f"{mechanism}=[name={ADMIN},password={self._admin_password}]"]
        try:
            result = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(f"formatting the Kafka data dir {self._data_dir} took over {timeout:.0f}s") from exc
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting the Kafka data dir {self._data_dir} failed (exit {result.returncode})"
                f"{self._java_hint(result.stdout)}:\n{_tail(result.stdout)}"
            )

    def _spawn(self, java: str, lib: Path, config: Path) -> None:
        assert self._data_dir is not None
        with open(self._data_dir / _BROKER_LOG, "ab") as broker_log:  # the child keeps its own fd
            self._log_start = broker_log.tell()
            self._proc = subprocess.Popen(
                [*self._jvm(java, lib, "512m"), "kafka.Kafka", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=broker_log,
                stderr=subprocess.STDOUT,
                cwd=self._data_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        atexit.register(self.stop)
        log.info(
            "kafka.starting pid=%s port=%s data_dir=%s", self._proc.pid, self._port, self._data_dir,
            extra={"pid": self._proc.pid, "port": self._port, "data_dir": str(self._data_dir)},
        )  # fmt: skip

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        assert self._proc is not None and self._port is not None
        bootstrap, last_error = self.bootstrap, "port not open yet"
        # The probe runs its own event loop in a worker thread, so start() also works when
        # called from code that already runs inside an event loop.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-probe") as pool:
            while True:
                code = self._proc.poll()
                if code is not None:
                    tail = self._log_tail()
                    raise LocalKafkaError(
                        f"the Kafka broker exited with code {code} before it was ready"
                        f"{self._java_hint(tail)}:{_errors(tail)}\n{self._log_label()}:\n{tail}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LocalKafkaError(
                        f"the Kafka broker on {bootstrap} did not answer within {timeout:.0f}s "
                        f"(last probe: {last_error}); {self._log_label()}:\n{self._log_tail()}"
                    )
                if _accepts_connections(self._port):
                    probe_timeout = min(remaining, 10.0)
                    try:
                        pool.submit(asyncio.run, _probe(self.access(), probe_timeout)).result(probe_timeout + 5)
                        return
                    except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
                        last_error = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(0.2)  # a poll interval that also notices an early exit at once

    def _run_async(self, coro: Any, timeout: float) -> None:
        # A loop of its own in a worker thread, as for the probe: start() may run inside an event loop.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-setup") as pool:
            pool.submit(asyncio.run, coro).result(timeout)

    async def _add_users(self) -> None:
        from connectors.kafka_acls import upsert_scram_users

        assert self.users is not None
        admin = self.access().admin(client_id="aiops-kafka-local-setup")
        await admin.start()
        try:
            await upsert_scram_users(admin, self.users)
        finally:
            await admin.close()

    def _security_props(self, port: int, controller_port: int) -> dict[str, str]:
        """SASL_SSL on both listeners, the authorizer, and the super user (see the module's docstring)."""
        assert self._data_dir is not None and self.users is not None
        tls = self._data_dir / "tls"
        _make_certificates(tls)
        # The super user's SCRAM credentials are written once, when the data dir is formatted; a
        # reused data dir keeps its password.
        password_file = tls / "admin.password"
        if password_file.is_file():
            self._admin_password = password_file.read_text().strip()
        else:
            password_file.write_text(self._admin_password)
            password_file.chmod(0o600)

        def plain(users: Mapping[str, str]) -> str:
            # The broker logs in as the super user to itself and to the controller; user_<name> are
            # the PLAIN logins it accepts (PLAIN users live in this file, SCRAM ones in the metadata).
            accepted = " ".join(f'user_{name}="{password}"' for name, password in users.items())
            return (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{ADMIN}" password="{self._admin_password}" {accepted};'
            )

        everyone = {ADMIN: self._admin_password, **self.users}
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        tls_listener = f"SSL://{_HOST}:{self._tls_port}"
        return {
            "listeners": f"SASL_SSL://{_HOST}:{port},{tls_listener},CONTROLLER://{_HOST}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{_HOST}:{port},{tls_listener}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:SASL_SSL",
            "listener.name.ssl.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain({ADMIN: self._admin_password}),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": plain(everyone),
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls / "broker.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls / "ca.pem"),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN}",
        }

    def _log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        if path is None or not path.is_file():
            return "(no broker log)"
        with open(path, "rb") as fh:
            fh.seek(max(self._log_start, path.stat().st_size - 64 * 1024))
            return _tail(fh.read().decode(errors="replace"), lines)

    def _log_label(self) -> str:
        # A temporary data dir is removed when start() fails, so its path would lead nowhere.
        return "last lines of the broker log" if self._owns_data_dir else f"last lines of {self.log_path}"

    def _java_hint(self, output: str) -> str:
        if "UnsupportedClassVersionError" in output:
            return f" (Kafka {self.version} needs Java 17 or newer; set JAVA_HOME to one)"
        return ""


def _certificate(
    subject: str, key: Any, issuer: Any | None, signer: Any, *, ca: bool = False, host: bool = False
) -> Any:
    """An X.509 certificate for ``subject``'s ``key``, signed by ``signer`` (``issuer``'s key; none: self-signed),
    valid for a day: enough for a run. ``host``: it names 127.0.0.1 and localhost, as a server's must."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if host:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(_HOST))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_secret(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def _make_certificates(directory: Path) -> None:
    """A CA (``ca.pem``, its key ``ca.key`` to sign client certificates later) and the broker's key
    and certificate signed by it (``broker.pem``, the PEM keystore Kafka reads)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("aiops-kafka-local CA", ca_key, None, ca_key, ca=True)
    broker = _certificate(_HOST, broker_key, ca, ca_key, host=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca.public_bytes(Encoding.PEM))
    _write_secret(directory / "ca.key", _pem_key(ca_key))
    _write_secret(
        directory / "broker.pem",
        _pem_key(broker_key) + broker.public_bytes(Encoding.PEM) + ca.public_bytes(Encoding.PEM),
    )


def _client_certificate(directory: Path, user: str) -> tuple[Path, Path]:
    """A certificate with the common name ``user`` signed by the CA of ``directory``, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    certfile, keyfile = directory / f"client-{user}.pem", directory / f"client-{user}.key"
    certfile.write_bytes(_certificate(user, key, ca, ca_key).public_bytes(Encoding.PEM))
    _write_secret(keyfile, _pem_key(key))
    return certfile, keyfile


def main(argv: list[str] | None = None) -> int:
    """Run a local broker in the foreground for development: Ctrl-C or SIGTERM stops it cleanly."""
    parser = argparse.ArgumentParser(
        prog="python -m aiops.kafka_local",
        description=f"Run a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft) on {_HOST}.",
    )
    parser.add_argument("--port", type=int, default=9092, help="client port (default: 9092)")
    parser.add_argument("--data-dir", type=Path, help="keep broker data here (default: a temp dir removed at exit)")
    parser.add_argument("--fetch-only", action="store_true", help="only download the Kafka jars, then exit")
    parser.add_argument(
        "--user",
        action="append",
        metavar="NAME=PASSWORD",
        help="secure the broker (SASL_SSL, ACLs) and add this SCRAM/PLAIN user; repeat for more",
    )
    args = parser.parse_args(argv)
    if any("=" not in user for user in args.user or ()):
        parser.error("--user takes NAME=PASSWORD")
    users = dict(user.split("=", 1) for user in args.user) if args.user else None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Further signals are ignored so the broker's clean shutdown is not cut short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    kafka: LocalKafka | None = None
    try:
        if args.fetch_only:
            log.info("kafka.jars lib=%s", ensure_jars())
            return 0
        kafka = LocalKafka(port=args.port, data_dir=args.data_dir, users=users)
        print(f"kafka ready on {kafka.start()}", flush=True)
        if kafka.secure:
            admin = kafka.admin_security
            print(f"SASL_SSL; CA {kafka.cafile}; super user {admin.username} password {admin.password}", flush=True)
        while kafka.running:
            time.sleep(1.0)
        # Read the log now: stop() below removes a temporary data dir with it.
        log.error("kafka.exited unexpectedly; last lines of the broker log:\n%s", kafka._log_tail())
        return 1
    except KeyboardInterrupt:
        return 0
    except LocalKafkaError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if kafka is not None:
            kafka.stop()


if __name__ == "__main__":
    sys.exit(main())
