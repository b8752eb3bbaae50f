"""kube.py without a cluster: error decoding, the watch stream and credential loading, against
small HTTP(S) servers on loopback (http.server in a thread; certificates made with openssl)."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from ssa_controller.cli import UsageError, connect
from ssa_controller.client import serviceaccount
from ssa_controller.client.credentials import SERVICE_ACCOUNT_DIR_ENV, CredentialsError
from ssa_controller.client.kube import Kube
from ssa_controller.client.pools import KEEPALIVE, TRANSPORTS
from ssa_controller.client.watch import WATCH_STALLED
from ssa_controller.client.wire import ApiError
from ssa_controller.client.wire import error_from as _error_from
from ssa_controller.envtest import poll_until

Respond = Callable[["Handler"], None]

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- loopback servers


class Handler(BaseHTTPRequestHandler):
    """Hands every request to its server's `respond`."""

    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.respond(self)

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.respond(self)

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def echo(self) -> None:
        """Answer with what the client sent: path, credentials, client certificate, SNI."""
        peer = getattr(self.connection, "getpeercert", lambda: None)()
        subject = dict(pair[0] for pair in peer["subject"]) if peer else {}
        self.send_json(200, {"path": self.path,
                             "authorization": self.headers.get("Authorization"),
                             "proxyAuthorization": self.headers.get("Proxy-Authorization"),
                             "client": subject.get("commonName"),
                             "serverName": self.server.server_names[-1:]})


class Server(ThreadingHTTPServer):
    """An HTTP(S) server on 127.0.0.1, port 0, serving in a daemon thread."""

    daemon_threads = True

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.respond = respond
        self.released = threading.Event()   # set on stop: blocked handlers may finish
        self.server_names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-response is what some tests do

    def stop(self) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """serve(respond, tls=None) -> a started Server; all are stopped after the test."""
    servers: list[Server] = []

    def start(respond: Respond, tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(respond, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client() -> Iterator[Callable[..., Kube]]:
    """client(server_url, **kwargs) -> a Kube closed after the test."""
    clients: list[Kube] = []

    def make(server: str, **kwargs: Any) -> Kube:
        clients.append(Kube(server, request_timeout=5.0, **kwargs))
        return clients[-1]

    yield make
    for kube in clients:
        kube.close()


# --------------------------------------------------------------------------- certificates


def _self_signed(directory: Path, name: str, *extensions: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
         *(arg for extension in extensions for arg in ("-addext", extension))],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Self-signed certificates: `loopback` (IP 127.0.0.1), `named` (DNS kube.example only) and
    three client certificates `client-0..2`, each its own CA."""
    directory = tmp_path_factory.mktemp("certs")
    clients = [_self_signed(directory, f"client-{i}") for i in range(3)]
    bundle = directory / "clients.crt"
    bundle.write_text("".join(cert.read_text() for cert, _ in clients))
    return SimpleNamespace(
        directory=directory,
        loopback=_self_signed(directory, "loopback", "subjectAltName=IP:127.0.0.1"),
        named=_self_signed(directory, "named", "subjectAltName=DNS:kube.example"),
        clients=clients, client_bundle=bundle)


def tls(pair: tuple[Path, Path], client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pair)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context


def kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    return path


# --------------------------------------------------------------------------- error decoding


def test_an_error_with_a_status_body_carries_its_reason_message_and_body() -> None:
    body = {"kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409,
            "message": 'Apply failed with 1 conflict: conflict with "other": .spec.replicas'}
    error = _error_from(409, json.dumps(body).encode(), {})
    assert (error.status, error.reason, error.message) == (409, "Conflict", body["message"])
    assert error.body == body
    assert error.retry_after is None
    assert str(error) == f"409 Conflict: {body['message']}"


def test_an_error_without_json_keeps_the_start_of_the_body_as_its_message() -> None:
    error = _error_from(502, b"<html>bad gateway</html>" + b"x" * 500, {})
    assert (error.status, error.reason, error.body) == (502, "", None)
    assert error.message.startswith("<html>bad gateway</html>")
    assert len(error.message) == 200
    assert _error_from(500, b"", {}).message == "an answer 500 without a body"
    assert _error_from(500, b"[1, 2]", {}).body is None  # JSON, but not a Status


@pytest.mark.parametrize(("header", "expected"), [("3", 3.0), ("0.5", 0.5), ("soon", None)])
def test_retry_after_is_read_in_seconds(header: str, expected: float | None) -> None:
    body = json.dumps({"kind": "Status", "reason": "TooManyRequests", "message": "slow down"})
    error = _error_from(429, body.encode(), {"retry-after": header})
    assert (error.reason, error.retry_after) == ("TooManyRequests", expected)


@pytest.mark.parametrize("status", [301, 302, 304, 307])
def test_a_redirect_is_no_success(serve, client, status) -> None:
    """Redirects are not followed; an empty 3xx to a Lease PUT must not count as a renewal."""
    def respond(handler: Handler) -> None:
        handler.send_response(status)
        handler.send_header("Location", "https://elsewhere.invalid/")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    kube = client(serve(respond).url())
    with pytest.raises(ApiError) as caught:
        kube.update("/apis/coordination.k8s.io/v1/namespaces/n/leases/l", {"spec": {}})
    assert caught.value.status == status
    assert "without a body (Location: https://elsewhere.invalid/)" in caught.value.message


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxied"])
def test_every_server_warning_is_logged_once(serve, client, through_proxy,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """kube-apiserver sends one Warning header per warning; all are kept, each text logged once
    however often it comes (as client-go's deduplicating warning writer)."""
    def respond(handler: Handler) -> None:
        handler.send_response(200)
        for text in ("apps/v1beta1 is deprecated, use apps/v1", 'unknown field \\"spec.x\\"'):
            handler.send_header("Warning", f'299 - "{text}"')
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    server = serve(respond)
    kube = client("http://kube.invalid:6443", proxy_url=server.url()) if through_proxy \
        else client(server.url())
    with caplog.at_level("WARNING", logger="ssa_controller.client.serverwarnings"):
        for _ in range(3):
            kube.get("/version")
    assert [r.getMessage() for r in caplog.records] == [
        "the API server warns: apps/v1beta1 is deprecated, use apps/v1",
        'the API server warns: unknown field "spec.x"']


def test_an_error_status_from_the_server_raises_api_error(serve, client) -> None:
    server = serve(lambda h: h.send_json(
        429, {"kind": "Status", "reason": "TooManyRequests", "message": "slow down"},
        {"Retry-After": "2"}))
    with pytest.raises(ApiError) as caught:
        client(server.url()).get("/api/v1/namespaces")
    assert (caught.value.status, caught.value.reason, caught.value.retry_after) == (
        429, "TooManyRequests", 2.0)


# --------------------------------------------------------------------------- watch stream


def _event(kind: str, name: str) -> dict[str, Any]:
    return {"type": kind, "object": {"kind": "AppTask", "metadata": {"name": name}}}


def test_watch_events_split_across_chunks_are_reassembled(serve, client) -> None:
    events = [_event("ADDED", "a"), _event("MODIFIED", "b"), _event("BOOKMARK", "c")]
    stream = b"".join(json.dumps(e).encode() + b"\n" for e in events) + b"\n"  # a blank line
    end = len(json.dumps(events[0]))  # where the first event's newline is
    paths: list[str] = []

    def respond(handler: Handler) -> None:
        paths.append(handler.path)
        handler.start_chunked()
        # the first event cut in two; its newline with the second's start; the rest; the end
        for part in (stream[:end - 5], stream[end - 5:end + 10], stream[end + 10:], b""):
            handler.send_chunk(part)

    server = serve(respond)
    with client(server.url()).watch("/apis/example.com/v1/apptasks",
                                    {"resourceVersion": "7"}, timeout=5) as watch:
        assert list(watch) == events
    assert paths == ["/apis/example.com/v1/apptasks?resourceVersion=7&watch=true"]


def _closed_mid_read(watch: Any) -> tuple[list[Any], list[BaseException]]:
    """Iterate `watch` in a thread until its first event, close it from here, and once that
    thread has ended: (the events it saw, the errors it raised)."""
    seen: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            seen.extend(watch)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertions
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    poll_until(lambda: seen, timeout=5, message="the first event")
    watch.close()
    reader.join(5)
    assert not reader.is_alive(), "close() did not abort the blocked read"
    return seen, errors


def _one_event_then_silence(handler: Handler) -> None:
    """A watch: one event, then an open connection and silence; any other request echoed."""
    if "watch=true" not in handler.path:
        handler.echo()
        return
    handler.start_chunked()
    handler.send_chunk(json.dumps(_event("ADDED", "a")).encode() + b"\n")
    handler.server.released.wait(30)  # then nothing more: the client blocks reading


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_close_from_another_thread_ends_a_blocked_read(serve, client, certs, scheme) -> None:
    """Over TLS too: the abort must not leave the reader stuck in the TLS layer."""
    server = serve(_one_event_then_silence, tls(certs.loopback) if scheme == "https" else None)
    kube = client(server.url(scheme), ca_file=str(certs.loopback[0]))
    watch = kube.watch("/apis/example.com/v1/apptasks", {}, timeout=30)
    seen, errors = _closed_mid_read(watch)
    assert errors == []
    assert seen == [_event("ADDED", "a")]
    watch.close()  # again: a no-op
    assert kube.get("/version")["path"] == "/version"  # the client goes on with new connections


def test_a_connection_dropped_mid_watch_is_a_transport_error(serve, client) -> None:
    def respond(handler: Handler) -> None:
        handler.start_chunked()
        handler.send_chunk(json.dumps(_event("ADDED", "a")).encode() + b"\n")
        handler.close_connection = True  # no final chunk: the body ends early

    server = serve(respond)
    watch = client(server.url()).watch("/apis/example.com/v1/apptasks", {}, timeout=5)
    events = iter(watch)
    assert next(events) == _event("ADDED", "a")
    with pytest.raises(ApiError) as caught:
        next(events)
    assert (caught.value.status, caught.value.reason) == (0, "TransportError")


def test_a_watch_open_past_its_deadline_is_stalled_and_idle_connections_are_dropped(
        serve, client) -> None:
    peers: list[int] = []

    def respond(handler: Handler) -> None:
        peers.append(handler.client_address[1])
        if "watch=true" not in handler.path:
            handler.send_json(200, {})
            return
        handler.start_chunked()
        handler.send_chunk(json.dumps(_event("ADDED", "a")).encode() + b"\n")
        handler.server.released.wait(30)  # then silence, the connection open: a hung server

    server = serve(respond)
    kube = client(server.url())
    started = time.monotonic()
    events = iter(kube.watch("/apis/example.com/v1/apptasks", {}, timeout=1.0))
    kube.get("/version")  # a second connection, idle in the pool while the watch stalls
    assert next(events) == _event("ADDED", "a")
    with pytest.raises(ApiError) as caught:
        next(events)
    assert (caught.value.status, caught.value.reason) == (0, WATCH_STALLED)
    assert 1.0 <= time.monotonic() - started < 5.0
    kube.get("/version")
    assert len(set(peers)) == 3, "the idle connection was reused after the stall"


@pytest.fixture
def silent_peer() -> Iterator[Callable[[bool], int]]:
    """silent_peer(tunnel) -> the port of a listener that accepts and never speaks TLS; with
    `tunnel`, a proxy that grants every CONNECT first (then the tunnel stays silent)."""
    listeners: list[socket.socket] = []
    done = threading.Event()

    def hold(conn: socket.socket, tunnel: bool) -> None:
        with conn:
            if tunnel:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            done.wait(30)

    def start(tunnel: bool) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def accept() -> None:
            while not done.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=hold, args=(conn, tunnel), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    done.set()
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxied"])
def test_every_request_is_bounded_from_its_connect_by_the_request_timeout(
        silent_peer, client, through_proxy) -> None:
    """A TLS handshake that never ends fails the request at `request_timeout` (0.5 s here),
    not at the 10 s connect timeout, directly and through a proxy's tunnel alike."""
    port = silent_peer(through_proxy)
    kube = client("https://kube.invalid:6443" if through_proxy else f"https://127.0.0.1:{port}",
                  proxy_url=f"http://127.0.0.1:{port}" if through_proxy else None)
    kube.request_timeout = 0.5
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        kube.get("/version")
    assert (caught.value.status, caught.value.reason) == (0, "TransportError")
    assert time.monotonic() - started < 2.0


def test_connections_use_tcp_keepalive(serve, client) -> None:
    """Requests and watches open their connections the same way (http1.Pool)."""
    server = serve(lambda h: h.send_json(200, {}))
    kube = client(server.url())
    kube.get("/version")
    sock = kube._pool._pool_for((None, None))._idle[-1].sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert tuple(sock.getsockopt(socket.IPPROTO_TCP, option) for option in (
        socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)) == KEEPALIVE


@pytest.mark.parametrize(("status", "body", "reason"), [
    (410, {"kind": "Status", "reason": "Expired", "message": "too old resource version"},
     "Expired"),
    (403, {"kind": "Status", "reason": "Forbidden", "message": "cannot watch apptasks"},
     "Forbidden"),
    (500, b"internal error", ""),
])
def test_a_watch_the_server_refuses_raises_api_error(serve, client, status, body, reason) -> None:
    server = serve(lambda h: h.send_json(status, body))
    with pytest.raises(ApiError) as caught:
        client(server.url()).watch("/apis/example.com/v1/apptasks", {}, timeout=5)
    assert (caught.value.status, caught.value.reason) == (status, reason)


# --------------------------------------------------------------------------- credentials


@pytest.fixture
def in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs: SimpleNamespace,
               serve) -> SimpleNamespace:
    """A service-account directory (token, ca.crt) and the env of a pod, for an HTTPS echo
    server whose certificate names 127.0.0.1."""
    server = serve(Handler.echo, tls(certs.loopback))
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("token-1\n")
    (directory / "ca.crt").write_text(certs.loopback[0].read_text())
    monkeypatch.setenv(SERVICE_ACCOUNT_DIR_ENV, str(directory))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    for name in ("KUBECONFIG", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return SimpleNamespace(directory=directory, server=server)


def test_in_cluster_credentials_send_the_token_and_reread_it_as_it_rotates(
        in_cluster: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    later = [0.0]
    monkeypatch.setattr(serviceaccount, "time",
                        SimpleNamespace(monotonic=lambda: time.monotonic() + later[0]))
    kube = Kube.in_cluster()
    try:
        assert kube.server == in_cluster.server.url("https")
        assert kube.get("/version")["authorization"] == "Bearer token-1"  # without the newline
        (in_cluster.directory / "token").write_text("token-2")
        assert kube.get("/version")["authorization"] == "Bearer token-1"  # re-read once a minute
        later[0] = serviceaccount.TOKEN_REREAD
        assert kube.get("/version")["authorization"] == "Bearer token-2"
    finally:
        kube.close()


def test_a_pod_without_a_proxy_loads_neither_the_kubernetes_package_nor_urllib3(
        in_cluster) -> None:
    """The kubernetes package's import costs a pod about 30 MB and 0.4 CPU-seconds (see
    serviceaccount); urllib3 serves only requests through a proxy (see proxied)."""
    probe = ("import sys; from ssa_controller.cli import connect; "
             "kube = connect(None, None); kube.get('/version'); "
             "kube.watch('/version', {}, timeout=5).close(); "
             "print(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('kubernetes', 'urllib3')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    assert loaded.strip() == "[]"


def test_run_loads_neither_the_lab_nor_the_local_control_plane(in_cluster) -> None:
    """`ssa-controller run`, through its real entry point as a pod runs it (one pass here),
    imports neither the failure-mode lab (its bad controllers) nor envtest (only --local needs
    it), nor urllib3 or the kubernetes package: -X importtime names every module imported."""
    def empty_lists(handler: Handler) -> None:
        handler.send_json(200, {"kind": "List", "metadata": {"resourceVersion": "1"},
                                "items": []})

    in_cluster.server.respond = empty_lists
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ssa_controller", "run",
                           "--once"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"ssa_controller.runner", "ssa_controller.controller"} <= imported
    assert sorted(m for m in imported if m.split(".")[0] in ("ssa_lab", "urllib3", "kubernetes")
                  or m.startswith("ssa_controller.envtest")) == []


def test_in_cluster_requests_take_the_environments_proxy_unless_no_proxy_matches(
        in_cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: a proxy that refuses
        monkeypatch.delenv("no_proxy", raising=False)  # it would take precedence
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{sock.getsockname()[1]}")
        monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,127.0.0.1")
        direct = Kube.in_cluster()
        monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")
        proxied = Kube.in_cluster()
        try:
            assert direct.get("/version")["authorization"] == "Bearer token-1"
            with pytest.raises(ApiError) as caught:
                proxied.get("/version")
            assert (caught.value.status, caught.value.reason) == (0, "TransportError")
        finally:
            direct.close()
            proxied.close()


def test_connect_without_a_kubeconfig_uses_the_service_account(in_cluster) -> None:
    kube = connect(None, None)
    assert kube is not None
    try:
        assert kube.get("/version")["authorization"] == "Bearer token-1"
    finally:
        kube.close()


def test_a_missing_service_account_token_is_a_clear_error(in_cluster) -> None:
    (in_cluster.directory / "token").unlink()
    with pytest.raises(UsageError, match=r"in-cluster config .*serviceaccount.*token"):
        connect(None, None)


def test_an_absent_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no kubeconfig found"):
        connect(str(tmp_path / "absent"), None)


@pytest.mark.parametrize(("user", "expected"), [
    ({"token": "abc"}, "Bearer abc"),
    ({"username": "admin", "password": "s3cret"},
     "Basic " + base64.b64encode(b"admin:s3cret").decode()),
])
def test_kubeconfig_tokens_and_basic_auth_are_sent_as_such(serve, tmp_path, user,
                                                           expected) -> None:
    server = serve(Handler.echo)
    path = kubeconfig(tmp_path / "config", {"server": server.url()}, user)
    kube = Kube.from_kubeconfig(str(path))
    try:
        assert kube.get("/version")["authorization"] == expected
    finally:
        kube.close()


def test_a_server_url_with_a_path_prefixes_every_request(serve, client) -> None:
    server = serve(Handler.echo)  # as behind a gateway serving several clusters
    kube = client(server.url() + "/k8s/clusters/c-1/")
    assert kube.get("/version", {"pretty": True})["path"] == "/k8s/clusters/c-1/version?pretty=true"


def test_kubeconfig_proxy_url_is_used_with_its_credentials(serve, tmp_path) -> None:
    proxy = serve(Handler.echo)
    path = kubeconfig(tmp_path / "config", {
        "server": "http://kube.invalid:6443",  # unresolvable: only the proxy can answer
        "proxy-url": f"http://user:pw@127.0.0.1:{proxy.port}"}, {"token": "abc"})
    kube = Kube.from_kubeconfig(str(path))
    try:
        seen = kube.get("/version")
    finally:
        kube.close()
    assert seen["path"] == "http://kube.invalid:6443/version"  # a proxy request
    assert seen["proxyAuthorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert seen["authorization"] == "Bearer abc"


def test_a_watch_through_a_proxy_streams_its_events_until_closed(serve, client) -> None:
    paths: list[str] = []

    def respond(handler: Handler) -> None:
        paths.append(handler.path)
        _one_event_then_silence(handler)

    proxy = serve(respond)
    kube = client("http://kube.invalid:6443", proxy_url=f"http://127.0.0.1:{proxy.port}")
    watch = kube.watch("/apis/example.com/v1/apptasks", {"resourceVersion": "7"}, timeout=30)
    seen, errors = _closed_mid_read(watch)
    assert (seen, errors) == ([_event("ADDED", "a")], [])
    assert paths == ["http://kube.invalid:6443/apis/example.com/v1/apptasks?"
                     "resourceVersion=7&watch=true"]  # a proxy request


def test_a_socks_proxy_url_is_rejected_naming_the_field(tmp_path) -> None:
    path = kubeconfig(tmp_path / "config", {"server": "https://kube.invalid:6443",
                                            "proxy-url": "socks5://127.0.0.1:1080"},
                      {"token": "abc"})
    with pytest.raises(CredentialsError, match=r"proxy-url.*socks5.*not supported"):
        Kube.from_kubeconfig(str(path))


def test_a_refused_proxy_url_is_named_without_its_credentials(tmp_path) -> None:
    path = kubeconfig(tmp_path / "config", {"server": "https://kube.invalid:6443",
                                            "proxy-url": "socks5://admin:s3cr3t@proxy:1080"},
                      {"token": "abc"})
    with pytest.raises(CredentialsError) as refused:
        Kube.from_kubeconfig(str(path))
    assert "'socks5://proxy:1080'" in str(refused.value)
    assert "s3cr3t" not in str(refused.value) and "admin" not in str(refused.value)


def test_kubeconfig_tls_server_name_is_used_for_sni_and_verification(serve, tmp_path,
                                                                      certs) -> None:
    server = serve(Handler.echo, tls(certs.named))  # its certificate names kube.example only
    cluster = {"server": server.url("https"), "certificate-authority": str(certs.named[0])}
    without = Kube.from_kubeconfig(str(kubeconfig(tmp_path / "plain", cluster, {"token": "t"})))
    with_name = Kube.from_kubeconfig(str(kubeconfig(
        tmp_path / "named", {**cluster, "tls-server-name": "kube.example"}, {"token": "t"})))
    try:
        with pytest.raises(ApiError) as caught:
            without.get("/version")
        assert caught.value.status == 0 and "127.0.0.1" in caught.value.message
        assert with_name.get("/version")["serverName"] == ["kube.example"]
    finally:
        without.close()
        with_name.close()


EXEC_PLUGIN = """
import json, pathlib, sys
directory, expiry = pathlib.Path(sys.argv[1]), sys.argv[2]
count = directory / "runs"
runs = int(count.read_text()) if count.exists() else 0
count.write_text(str(runs + 1))
name = f"client-{runs % 3}"
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"clientCertificateData": (directory / f"{name}.crt").read_text(),
                             "clientKeyData": (directory / f"{name}.key").read_text(),
                             "expirationTimestamp": expiry}}))
"""


def _exec_kubeconfig(tmp_path: Path, server: Server, certs: SimpleNamespace,
                     expiry: str) -> Path:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    return kubeconfig(
        tmp_path / "config",
        {"server": server.url("https"), "certificate-authority": str(certs.loopback[0])},
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                  "args": [str(plugin), str(certs.directory), expiry],
                  "interactiveMode": "Never"}})


def test_an_exec_plugin_client_certificate_is_renewed_when_it_expires(
        serve, tmp_path, certs) -> None:
    server = serve(Handler.echo, tls(certs.loopback, client_ca=certs.client_bundle))
    (certs.directory / "runs").unlink(missing_ok=True)
    kube = Kube.from_kubeconfig(str(_exec_kubeconfig(tmp_path, server, certs,
                                                     "2000-01-01T00:00:00Z")))
    try:
        # already expired: every request runs the plugin again and connects with its new
        # certificate (the plugin hands out client-0, client-1, client-2 in turn)
        presented = [kube.get("/version")["client"] for _ in range(3)]
    finally:
        kube.close()
    runs = int((certs.directory / "runs").read_text())
    assert presented == [f"client-{i % 3}" for i in range(runs - 3, runs)]
    assert len(set(presented)) == 3


def test_an_unexpired_exec_plugin_client_certificate_is_kept(serve, tmp_path, certs) -> None:
    server = serve(Handler.echo, tls(certs.loopback, client_ca=certs.client_bundle))
    (certs.directory / "runs").unlink(missing_ok=True)
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    kube = Kube.from_kubeconfig(str(_exec_kubeconfig(
        tmp_path, server, certs, later.strftime("%Y-%m-%dT%H:%M:%SZ"))))
    try:
        presented = {kube.get("/version")["client"] for _ in range(3)}
    finally:
        kube.close()
    assert presented == {"client-0"}
    assert (certs.directory / "runs").read_text() == "1"


EXEC_TOKEN_PLUGIN = """
import json, pathlib, sys
count = pathlib.Path(sys.argv[1])
runs = int(count.read_text()) if count.exists() else 0
count.write_text(str(runs + 1))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": f"token-{runs}", "expirationTimestamp": sys.argv[2]}}))
"""


@pytest.mark.parametrize(("expiry", "tokens"), [
    ("2000-01-01T00:00:00Z", ["Bearer token-1", "Bearer token-2", "Bearer token-3"]),
    ("2999-01-01T00:00:00Z", ["Bearer token-0"] * 3),
])
def test_an_exec_plugin_token_is_run_again_once_it_expires(serve, tmp_path, expiry,
                                                           tokens) -> None:
    """Through the kubernetes Configuration's public get_api_key_with_prefix (its refresh
    hook), before every request."""
    server = serve(Handler.echo)
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_TOKEN_PLUGIN)
    path = kubeconfig(tmp_path / "config", {"server": server.url()}, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": [str(plugin), str(tmp_path / "runs"), expiry], "interactiveMode": "Never"}})
    kube = Kube.from_kubeconfig(str(path))
    try:
        assert [kube.get("/version")["authorization"] for _ in range(3)] == tokens
    finally:
        kube.close()


# --------------------------------------------------------------------------- lists


def test_list_reads_a_collection_and_refuses_a_path_that_is_none(serve, client) -> None:
    """get() reads one object; list() a collection, its paging (limit, continue) the
    caller's, and a path that names no collection is a clear error, not a list of nothing."""
    def respond(handler: Handler) -> None:
        if "/apptasks/" in handler.path:
            handler.send_json(200, {"kind": "AppTask", "metadata": {"name": "a"}})
        else:
            handler.send_json(200, {"kind": "AppTaskList", "items": [], "metadata": {
                "resourceVersion": "7", "continue": handler.path.rpartition("=")[2]}})

    kube = client(serve(respond).url())
    page = kube.list("/apis/example.com/v1/apptasks",
                     {"labelSelector": None, "limit": 1, "continue": "next"})
    assert (page["items"], page["metadata"]) == ([], {"resourceVersion": "7", "continue": "next"})
    assert kube.get("/apis/example.com/v1/apptasks/a")["kind"] == "AppTask"
    with pytest.raises(ValueError, match="GET /apis/example.com/v1/apptasks/a answered AppTask, "
                                         "not a list"):
        kube.list("/apis/example.com/v1/apptasks/a")


# --------------------------------------------------------------------------- transports


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_watch_the_server_never_answers_fails_within_the_request_timeout(
        silent_peer, client, transport) -> None:
    """Opening a watch (connect, send, the answer's head) is bounded like a request: a server
    that takes the request and never answers fails it at `request_timeout` (0.5 s here), not at
    the watch's deadline (10 s)."""
    kube = client(f"http://127.0.0.1:{silent_peer(False)}", transport=transport)
    kube.request_timeout = 0.5
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        kube.watch("/apis/example.com/v1/apptasks", {}, timeout=10)
    assert (caught.value.status, caught.value.reason) == (0, "TransportError")
    assert time.monotonic() - started < 3.0


def test_run_takes_the_configured_transport(in_cluster, tmp_path) -> None:
    """`client.transport: urllib3` reaches the client `run` makes (through its real entry point,
    as a pod runs it): urllib3 is loaded, which the built-in transport never does."""
    in_cluster.server.respond = lambda handler: handler.send_json(200, {
        "kind": "List", "metadata": {"resourceVersion": "1"}, "items": []})
    config = tmp_path / "controller.yaml"
    config.write_text("client:\n  transport: urllib3\n")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ssa_controller", "run",
                           "--once", "--config", str(config)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "urllib3" in {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                         if line.startswith("import time:")}
