"""A real Kubernetes control plane (etcd, kube-apiserver, optionally kube-controller-manager) for tests and development.

Why real binaries: what the actuator must get right lives in the API server itself: RBAC, admission
policies, validation, the scale subresource, resourceVersion conflicts, the Deployment controller's
ReplicaSets. A fake only agrees with what its author knew. Why built from source: there is no Docker
on many dev machines and CI runners, and Kubernetes publishes no stand-alone server binaries as Go
modules; so a small wrapper module requires ``k8s.io/kubernetes`` (with each ``k8s.io/*`` staging
module it replaces locally pinned to its published ``v0.Y.Z``) and builds three tiny mains. That
takes minutes once per machine and version; the result is cached under ``AIOPS_CACHE_DIR``.

    with LocalKube(controller_manager=True) as kube:
        kube.write_kubeconfig(path)          # admin, or token=... for a ServiceAccount's token
        kube.server, kube.ca_path, kube.admin_token

CLI::

    python -m aiops.kube_local --build-only            # what `make setup` runs (kustomize too)
    python -m aiops.kube_local [--controller-manager]  # foreground until Ctrl-C; prints a kubeconfig path

Needs ``go`` (any version from 1.21 fetches the toolchain Kubernetes asks for) for the first build.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from pipeline.config import get_settings

__all__ = [
    "BINARIES",
    "KUBE_VERSION",
    "KUSTOMIZE_VERSION",
    "LocalKube",
    "LocalKubeError",
    "ensure_binaries",
    "ensure_kustomize",
    "kustomize_build",
    "main",
]

log = logging.getLogger("aiops.kube_local")

KUBE_VERSION = "1.37.2"
"""The Kubernetes release to build; bump it with the cluster versions the project supports."""

KUSTOMIZE_VERSION = "5.8.1"
"""kustomize renders deploy/'s overlays in the tests, as `kubectl apply -k` would; 5.8.1 builds with Go 1.24."""

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
DEFAULT_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "validatingadmissionpolicy-status-controller",
)
"""Enough to turn a Deployment into ReplicaSets and (Pending: no scheduler, no kubelet) Pods, give each
namespace its default ServiceAccount, and report admission policies' type checking in their status."""

_HOST = "127.0.0.1"
_BUILD_TIMEOUT_S = 3600.0
_MIN_GO = (1, 21)  # the first Go that downloads the toolchain a go.mod asks for
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SERVICE_CIDR = "10.0.0.0/24"
_ISSUER = "https://kubernetes.default.svc.cluster.local"

# One main per binary: each is the upstream command's own entry point, nothing of ours.
_MAINS = {
    "etcd": """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
""",
    "kube-apiserver": """package main

import (
\t"os"

\t"k8s.io/component-base/cli"
\t"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
""",
    "kube-controller-manager": """package main

import (
\t"os"

\t"k8s.io/component-base/cli"
\t"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() { os.Exit(cli.Run(app.NewControllerManagerCommand())) }
""",
}


class LocalKubeError(RuntimeError):
    """The local control plane could not be built or started; the message says what to do about it."""


# -- building -----------------------------------------------------------------------------


def _go() -> str:
    found = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if found is None:
        raise LocalKubeError(
            "`go` not found: it is needed once to build kube-apiserver, kube-controller-manager and etcd "
            "(Debian/Ubuntu: `apt-get install golang-go`; macOS: `brew install go`; or https://go.dev/dl)."
        )
    version = subprocess.run([found, "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout.strip()
    parts = re.match(r"go(\d+)\.(\d+)", version)
    if parts is None or (int(parts[1]), int(parts[2])) < _MIN_GO:
        raise LocalKubeError(
            f"{found} is {version or 'of unknown version'}; building Kubernetes needs Go {_MIN_GO[0]}.{_MIN_GO[1]} "
            "or newer, which then fetches the exact toolchain Kubernetes asks for (https://go.dev/dl; "
            "Debian 12: golang-1.23 from bookworm-backports)."
        )
    return found


def bin_dir(version: str = KUBE_VERSION) -> Path:
    """Where the binaries of ``version`` live once built."""
    return get_settings().cache_dir / f"kubernetes-{version}" / "bin"


def _built(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def ensure_binaries(version: str = KUBE_VERSION) -> Path:
    """Return the directory holding etcd, kube-apiserver and kube-controller-manager, building them once.

    The build fills a temporary directory that is renamed into place only when all three binaries
    are there, so an interrupted build is never mistaken for a finished one; a lock file makes a
    second process wait for the first one's build instead of starting its own. Go's module cache
    (``go env GOMODCACHE``) keeps the sources; the build cache is temporary and removed after.
    """
    target = bin_dir(version)
    if _built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if _built(target):  # another process built it while we waited
            return target
        _build(version, target)
    return target


def _build(version: str, target: Path) -> None:
    go = _go()
    started = time.monotonic()
    build_log = target.parent / "build.log"
    log.info("kube.build version=%s into=%s log=%s (takes minutes, once)", version, target, build_log)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    env = os.environ | {
        "GOCACHE": str(work / "gocache"),
        "CGO_ENABLED": "0",
        "GOWORK": "off",
    }
    try:
        with open(build_log, "w") as out:

            def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
                out.write(f"$ {' '.join(args)}\n")
                out.flush()
                result = subprocess.run(
                    args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                    timeout=_BUILD_TIMEOUT_S, check=False,
                )  # fmt: skip
                out.write(result.stdout + result.stderr)
                out.flush()
                if result.returncode != 0:
                    said = _tail(result.stderr or result.stdout)
                    raise LocalKubeError(
                        f"building Kubernetes {version} failed at `{' '.join(args)}` (exit {result.returncode}); "
                        f"is the Go module proxy reachable? Full log: {build_log}\n{said}"
                    )
                return result

            module = work / "module"
            module.mkdir()
            upstream = _upstream_go_mod(run, version, module)
            (module / "go.mod").write_text(_wrapper_go_mod(version, upstream))
            for name, source in _MAINS.items():
                (module / name).mkdir()
                (module / name / "main.go").write_text(source)
            run(go, "mod", "tidy", cwd=module)
            partial = work / "bin"
            for name in BINARIES:
                run(go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(partial / name), f"./{name}", cwd=module)
            if target.exists():
                shutil.rmtree(target)  # an incomplete directory from an older, non-atomic build
            partial.rename(target)
    except subprocess.TimeoutExpired as exc:
        raise LocalKubeError(
            f"building Kubernetes {version} took over {_BUILD_TIMEOUT_S:.0f}s; see {build_log}"
        ) from exc
    finally:
        _remove_tree(work)
    elapsed = time.monotonic() - started
    sizes = {name: (target / name).stat().st_size // 2**20 for name in BINARIES}
    log.info("kube.built version=%s seconds=%.0f sizes_mib=%s", version, elapsed, sizes)


def ensure_kustomize(version: str = KUSTOMIZE_VERSION) -> Path:
    """Return the path of the ``kustomize`` binary of ``version``, built once from the Go module proxy.

    The same program `kubectl kustomize` embeds; the tests render deploy/'s overlays with it, so what
    they check is what `kubectl apply -k` would send. Built into a temporary directory and renamed into
    place, under the same kind of lock as :func:`ensure_binaries`.
    """
    target = get_settings().cache_dir / f"kustomize-{version}" / "kustomize"
    if os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(target, os.X_OK):
            return target
        work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
        env = os.environ | {"GOCACHE": str(work / "gocache"), "GOBIN": str(work / "bin"), "CGO_ENABLED": "0"}
        module = f"sigs.k8s.io/kustomize/kustomize/v5@v{version}"
        log.info("kustomize.build version=%s into=%s", version, target)
        try:
            result = subprocess.run(
                [_go(), "install", "-trimpath", "-ldflags", "-s -w", module], cwd=work, env=env,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise LocalKubeError(
                    f"building {module} failed (exit {result.returncode}); is the Go module proxy reachable?\n"
                    f"{_tail(result.stderr or result.stdout)}"
                )
            (work / "bin" / "kustomize").rename(target)
        except subprocess.TimeoutExpired as exc:
            raise LocalKubeError(f"building {module} took over {_BUILD_TIMEOUT_S:.0f}s") from exc
        finally:
            _remove_tree(work)
    return target


def kustomize_build(directory: Path) -> str:
    """``kustomize build directory``: the YAML stream `kubectl apply -k directory` would send."""
    result = subprocess.run(
        [str(ensure_kustomize()), "build", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise LocalKubeError(f"kustomize build {directory} failed: {result.stderr.strip()}")
    return result.stdout


def _upstream_go_mod(run: Callable[..., subprocess.CompletedProcess[str]], version: str, cwd: Path) -> str:
    """The go.mod of ``k8s.io/kubernetes@v<version>``: it names the staging modules and the etcd version."""
    result = run(_go(), "mod", "download", "-json", f"k8s.io/kubernetes@v{version}", cwd=cwd)
    info = json.loads(result.stdout)
    if info.get("Error"):
        raise LocalKubeError(f"cannot download k8s.io/kubernetes@v{version}: {info['Error']}")
    return Path(info["GoMod"]).read_text()


def _wrapper_go_mod(version: str, upstream: str) -> str:
    """A go.mod that requires Kubernetes and replaces each ``./staging`` module by its published release.

    Kubernetes' own go.mod replaces those modules with directories of its repository, which a
    dependent module cannot see; their published ``v0.<minor>.<patch>`` tags are the same code.
    etcd is pinned to the version Kubernetes itself requires.
    """
    staging_version = "v0." + version.split(".", 1)[1]
    staging = sorted(
        line.split()[0]
        for line in _directive_lines(upstream, "replace")
        if "=> ./staging/" in line and line.split()[0].startswith("k8s.io/")
    )
    if not staging:
        raise LocalKubeError(f"k8s.io/kubernetes@v{version}'s go.mod replaces no ./staging modules: unexpected layout")
    etcd = next(
        (
            line.split()[1]
            for line in _directive_lines(upstream, "require")
            if line.startswith("go.etcd.io/etcd/server/v3 ")
        ),
        None,
    )
    if etcd is None:
        raise LocalKubeError(f"k8s.io/kubernetes@v{version} does not require go.etcd.io/etcd/server/v3")
    lines = [
        "module aiops.local/kubebuild",
        "",
        "go 1.24",
        "",
        f"require k8s.io/kubernetes v{version}",
        f"require go.etcd.io/etcd/server/v3 {etcd}",
        "",
        *(f"replace {module} => {module} {staging_version}" for module in staging),
    ]
    return "\n".join(lines) + "\n"


def _directive_lines(go_mod: str, directive: str) -> Iterator[str]:
    """The entries of every ``directive`` in a go.mod, single-line or in a block, comments stripped."""
    in_block = False
    for raw in go_mod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
            elif line:
                yield line
        elif line == f"{directive} (":
            in_block = True
        elif line.startswith(f"{directive} "):
            yield line[len(directive) + 1 :].strip()


def _remove_tree(path: Path) -> None:
    # Go makes its cache files read-only; make them writable so rmtree can remove them.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(path, ignore_errors=True)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


# -- running ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when this process dies (Linux, main thread only).

    atexit does not run when Python is SIGKILLed; without this a test run killed by a CI timeout would
    leave an API server and etcd holding ports and memory. The kernel ties the signal to the thread that
    forked, so it is only armed from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, sigkill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 25) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, self.log_path.stat().st_size - 32 * 1024))
                return _tail(fh.read().decode(errors="replace"), lines)
        except OSError:
            return "(no log)"


class LocalKube:
    """etcd and kube-apiserver (and optionally kube-controller-manager) on 127.0.0.1, owned by this process.

    Everything lives in a temporary directory removed by stop(): certificates made at start, etcd's data,
    the logs. The API server serves TLS with its own CA (``ca_path``), authenticates ``admin_token``
    as a member of ``system:masters`` and ServiceAccount tokens from the TokenRequest API, and authorizes
    with RBAC alone, so a ServiceAccount can do exactly what the manifests grant it. Each server runs in
    its own process group, which stop() signals as a whole.
    """

    def __init__(
        self,
        *,
        controller_manager: bool = False,
        controllers: tuple[str, ...] = DEFAULT_CONTROLLERS,
        version: str = KUBE_VERSION,
    ) -> None:
        self.version = version
        self._with_controller_manager = controller_manager
        self._controllers = controllers
        self._dir: Path | None = None
        self._processes: list[_Process] = []
        self._port: int | None = None
        self.admin_token = secrets.token_urlsafe(32)

    @property
    def server(self) -> str:
        """``https://127.0.0.1:PORT``."""
        if self._port is None:
            raise LocalKubeError("LocalKube is not started: call start() or use it as a context manager")
        return f"https://{_HOST}:{self._port}"

    @property
    def ca_path(self) -> Path:
        """The CA that signed the API server's certificate: verify TLS against it."""
        return self._path("ca.crt")

    @property
    def directory(self) -> Path:
        """The temporary directory holding certificates, data and the servers' logs."""
        if self._dir is None:
            raise LocalKubeError("LocalKube is not started")
        return self._dir

    def log_path(self, name: str) -> Path:
        """The log of ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        return self._path(f"{name}.log")

    def start(self, timeout: float = 60.0) -> str:
        """Build if needed, start the servers and return the server URL once it serves requests.

        ``timeout`` bounds the start-up, not the one-time build. On failure everything started is
        stopped and the error carries the failing server's log tail.
        """
        if self._port is not None:
            return self.server
        binaries = ensure_binaries(self.version)
        self._dir = Path(tempfile.mkdtemp(prefix="aiops-kube-"))
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        try:
            self._write_credentials()
            etcd_url = self._start_etcd(binaries, deadline)
            self._start_apiserver(binaries, etcd_url, deadline)
            self.write_kubeconfig(self._path("admin.kubeconfig"))
            if self._with_controller_manager:
                self._start_controller_manager(binaries, deadline)
        except BaseException:
            self.stop()
            raise
        log.info("kube.ready server=%s seconds=%.1f dir=%s", self.server, time.monotonic() - started, self._dir)
        return self.server

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the servers (SIGTERM to each process group, SIGKILL after ``timeout``) and remove the directory."""
        atexit.unregister(self.stop)
        for process in reversed(self._processes):
            _stop_group(process.proc, timeout)
        self._processes = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._port = None

    def __enter__(self) -> LocalKube:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        contexts: tuple[str, ...] = ("local",),
        namespace: str = "default",
    ) -> Path:
        """A kubeconfig whose contexts (the first is current) reach this server as ``token`` (default: admin)."""
        user = "admin" if token is None else "token-user"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"server": self.server, "certificate-authority": str(self.ca_path)}}
                for name in contexts
            ],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": user, "namespace": namespace}} for name in contexts
            ],
            "current-context": contexts[0],
        }
        path.write_text(json.dumps(doc, indent=2))  # JSON is YAML: no YAML library needed here
        return path

    def get(self, path: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, dict]:
        """GET ``path`` on the API server as ``token`` (default: admin): ``(status, JSON body)``."""
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {token or self.admin_token}"}
        )
        context = ssl.create_default_context(cafile=str(self.ca_path))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"text": body.decode(errors="replace")}

    # -- internals -----------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.directory / name

    def _write_credentials(self) -> None:
        """A CA, the server's certificate for 127.0.0.1, the ServiceAccount signing key, the admin token."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        def key() -> rsa.RSAPrivateKey:
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)

        def pem(private: rsa.RSAPrivateKey) -> bytes:
            return private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )

        now = dt.datetime.now(dt.UTC)
        ca_key, server_key, sa_key = key(), key(), key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiops-local-kube-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        names = [x509.IPAddress(ipaddress.ip_address(_HOST)), x509.DNSName("localhost")]
        names += [x509.DNSName(n) for n in ("kubernetes", "kubernetes.default", "kubernetes.default.svc")]
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self._path("ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self._path("server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self._path("server.key").write_bytes(pem(server_key))
        self._path("sa.key").write_bytes(pem(sa_key))
        for name in ("server.key", "sa.key"):
            self._path(name).chmod(0o600)
        self._path("tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')
        self._path("tokens.csv").chmod(0o600)

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log_path = self._path(f"{name}.log")
        with open(log_path, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self._dir,
                start_new_session=True, preexec_fn=_die_with_parent(),
            )  # fmt: skip
        process = _Process(name, proc, log_path)
        self._processes.append(process)
        log.info("kube.starting %s pid=%s", name, proc.pid)
        return process

    def _start_etcd(self, binaries: Path, deadline: float) -> str:
        client, peer = f"http://{_HOST}:{_free_port()}", f"http://{_HOST}:{_free_port()}"
        process = self._spawn(
            "etcd",
            [
                str(binaries / "etcd"), "--name", "local", "--data-dir", str(self._path("etcd-data")),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"local={peer}", "--unsafe-no-fsync", "--log-level", "warn",
            ],
        )  # fmt: skip

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                    return bool(json.loads(response.read()).get("health") == "true")
            except (OSError, ValueError):
                return False

        self._wait(process, healthy, deadline, "etcd's /health")
        return client

    def _start_apiserver(self, binaries: Path, etcd_url: str, deadline: float) -> None:
        self._port = _free_port()
        sa_key = str(self._path("sa.key"))
        process = self._spawn(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                "--etcd-servers", etcd_url,
                "--bind-address", _HOST, "--advertise-address", _HOST, "--secure-port", str(self._port),
                "--cert-dir", str(self._path("certs")),
                "--tls-cert-file", str(self._path("server.crt")),
                "--tls-private-key-file", str(self._path("server.key")),
                "--service-account-key-file", sa_key, "--service-account-signing-key-file", sa_key,
                "--service-account-issuer", _ISSUER,
                "--token-auth-file", str(self._path("tokens.csv")),
                "--authorization-mode", "RBAC",
                "--service-cluster-ip-range", _SERVICE_CIDR,
                "--endpoint-reconciler-type", "none",
                "--profiling=false",
            ],
        )  # fmt: skip

        def ready() -> bool:
            try:
                status, _ = self.get("/readyz", timeout=2)
                if status != 200:
                    return False
                # The default namespace is made by a loop inside the server, soon after readiness.
                status, _ = self.get("/api/v1/namespaces/default", timeout=2)
                return status == 200
            except OSError:
                return False

        self._wait(process, ready, deadline, "kube-apiserver's /readyz")

    def _start_controller_manager(self, binaries: Path, deadline: float) -> None:
        kubeconfig = str(self._path("admin.kubeconfig"))
        port = _free_port()
        process = self._spawn(
            "kube-controller-manager",
            [
                str(binaries / "kube-controller-manager"),
                "--kubeconfig", kubeconfig,
                "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
                "--leader-elect=false",
                "--controllers", ",".join(self._controllers),
                "--bind-address", _HOST, "--secure-port", str(port), "--cert-dir", str(self._path("kcm-certs")),
                "--profiling=false",
            ],
        )  # fmt: skip
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # its own throwaway certificate

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"https://{_HOST}:{port}/healthz", timeout=1, context=insecure) as r:
                    return r.status == 200
            except OSError:
                return False

        self._wait(process, healthy, deadline, "kube-controller-manager's /healthz")

    def _wait(self, process: _Process, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            code = process.proc.poll()
            if code is not None:
                raise LocalKubeError(
                    f"{process.name} exited with code {code} before it was ready; last lines of its log:\n"
                    f"{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise LocalKubeError(f"{what} did not answer in time; last lines of its log:\n{process.tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(0.2)  # a poll interval that also notices an early exit at once


def _stop_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the child's process group, SIGKILL it if it has not exited after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("kube.kill pid=%s after=%.0fs", proc.pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the group still holds
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    """Build the binaries, or run a local control plane in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m aiops.kube_local",
        description=f"Build and run a local Kubernetes {KUBE_VERSION} control plane (etcd, kube-apiserver) on {_HOST}.",
    )
    parser.add_argument("--build-only", action="store_true", help="only build the binaries (once), then exit")
    parser.add_argument("--controller-manager", action="store_true", help="also run the Deployment controllers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    kube: LocalKube | None = None
    try:
        if args.build_only:
            log.info("kube.binaries dir=%s", ensure_binaries())
            log.info("kustomize path=%s", ensure_kustomize())
            return 0
        kube = LocalKube(controller_manager=args.controller_manager)
        kube.start()
        print(f"kube-apiserver ready on {kube.server}; KUBECONFIG={kube.directory / 'admin.kubeconfig'}", flush=True)
        while all(p.proc.poll() is None for p in kube._processes):
            time.sleep(1.0)
        log.error("a server exited unexpectedly; see the logs above")
        return 1
    except KeyboardInterrupt:
        return 0
    except LocalKubeError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if kube is not None:
            kube.stop()


if __name__ == "__main__":
    sys.exit(main())
