"""The network guard: the suite runs with every non-loopback connection and host-name lookup
refused, before anything is sent.

Nothing here sends a packet to a non-loopback address. Every remote attempt is made under a
guard installed by the test itself (so the check holds under ``--bark-allow-network`` too, and the
session's record stays clean); where a test needs to show what happens WITHOUT the guard, a spy
stands in for the socket layer and raises instead of connecting.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from plugin_projects import enable_plugin

from bark_ablation.core.errors import BarkAblationError
from bark_ablation.testing import network_guard
from bark_ablation.testing.network_guard import (
    MODE_ENV,
    PLUGIN_NAME,
    NetworkBlockedError,
    NetworkGuard,
    is_local_host,
)

REMOTE = ("192.0.2.1", 9)  # TEST-NET-1 (RFC 5737), discard port: routed nowhere, never contacted
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class ReachedSocketLayer(Exception):
    """Raised by the spy that stands in for the real socket calls."""


SOCKET_METHODS = ("connect", "connect_ex", "sendto", "sendmsg")
RESOLVERS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")


@contextlib.contextmanager
def spy_socket_layer() -> Iterator[list]:
    """Every socket call the guard patches replaced by a spy that records its address and raises
    (no I/O at all), with the session's guard taken off meanwhile; yields the list of calls."""
    calls = []

    def spy(operation):
        def call(*args):
            if operation in SOCKET_METHODS:  # (sock, ..., address)
                address = args[1] if operation.startswith("connect") else args[-1]
            else:
                address = args[:2] if operation == "getaddrinfo" else args[0]
            calls.append((operation, address))
            raise ReachedSocketLayer(operation)

        return call

    with network_guard.suspended(), pytest.MonkeyPatch.context() as patch:
        for operation in SOCKET_METHODS:
            patch.setattr(socket.socket, operation, spy(operation))
        for operation in RESOLVERS:
            patch.setattr(socket, operation, spy(operation))
        yield calls


@pytest.fixture
def no_proxy(monkeypatch):
    """Direct connections only: a proxy (even on loopback) would stand between client and host."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_suite_runs_under_the_guard(request):
    if request.config.getoption("--bark-allow-network"):
        pytest.skip("--bark-allow-network: the guard is off for this session")
    registered = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert registered is not None and registered.guard.installed
    assert registered.guard.current_test == request.node.nodeid
    assert socket.socket.connect.__module__ == "bark_ablation.testing.network_guard"
    assert socket.getaddrinfo.__module__ == "bark_ablation.testing.network_guard"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "::",
        "localhost",
        "LOCALHOST.",
        "ip6-localhost",
        "hub.localhost",
        "",
        None,
        b"127.0.0.1",
        "::1%lo",
    ],
)
def test_loopback_and_this_host_are_local(host):
    assert is_local_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "192.0.2.1",
        "10.0.0.1",
        "8.8.8.8",
        "::ffff:192.0.2.1",
        "2001:db8::1",
        "fe80::1%lo",
        "huggingface.co",
        "dl.fbaipublicfiles.com",
        "vm",
        "localhost.example.com",
        "127.0.0.1.nip.io",
        b"huggingface.co",
    ],
)
def test_everything_else_is_remote(host):
    assert not is_local_host(host)


def test_remote_connections_are_refused_before_the_socket_layer_sees_them():
    with spy_socket_layer() as calls, NetworkGuard() as guard:
        guard.current_test = "tests/example.py::test_x"
        with socket.socket() as sock, pytest.raises(NetworkBlockedError) as refused:
            sock.connect(REMOTE)
        with socket.socket() as sock, pytest.raises(NetworkBlockedError):
            sock.connect_ex(REMOTE)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(NetworkBlockedError):
            sock.sendto(b"x", REMOTE)
        with socket.socket(socket.AF_INET6) as sock, pytest.raises(NetworkBlockedError):
            sock.connect(("2001:db8::1", 9, 0, 0))
        assert calls == []  # nothing reached the socket layer, so nothing was sent
        # Loopback goes through to the layer below.
        with socket.socket() as sock, pytest.raises(ReachedSocketLayer):
            sock.connect(("127.0.0.1", 9))
        assert calls == [("connect", ("127.0.0.1", 9))]
    message = str(refused.value)
    assert "connect 192.0.2.1:9" in message and "tests must not reach the network" in message
    assert "test tests/example.py::test_x" in message and "--bark-allow-network" in message
    assert isinstance(refused.value, BarkAblationError) and not isinstance(refused.value, OSError)
    assert [(a.operation, a.host, a.port) for a in guard.attempts] == [
        ("connect", "192.0.2.1", 9),
        ("connect_ex", "192.0.2.1", 9),
        ("sendto", "192.0.2.1", 9),
        ("connect", "2001:db8::1", 9),
    ]
    assert {a.test for a in guard.attempts} == {"tests/example.py::test_x"}


def test_known_bad_twin_without_the_guard_the_same_attempts_reach_the_socket_layer():
    """The twin of the test above: the guard taken off, the same remote connection and lookup
    get to the socket layer (a spy here, so still nothing is sent)."""
    with spy_socket_layer() as calls:
        with socket.socket() as sock, pytest.raises(ReachedSocketLayer):
            sock.connect(REMOTE)
        with pytest.raises(ReachedSocketLayer):
            socket.getaddrinfo("huggingface.co", 443)
    assert calls == [("connect", REMOTE), ("getaddrinfo", ("huggingface.co", 443))]


def test_hub_host_name_lookups_are_refused():
    with spy_socket_layer() as calls, NetworkGuard() as guard:
        for lookup in (
            lambda: socket.getaddrinfo("huggingface.co", 443),
            lambda: socket.gethostbyname("huggingface.co"),
            lambda: socket.gethostbyname_ex("cdn-lfs.hf.co"),
            lambda: socket.gethostbyaddr("192.0.2.1"),
            lambda: socket.create_connection(("dl.fbaipublicfiles.com", 443), timeout=5),
        ):
            with pytest.raises(NetworkBlockedError):
                lookup()
        assert calls == []
    assert [a.host for a in guard.attempts] == [
        "huggingface.co",
        "huggingface.co",
        "cdn-lfs.hf.co",
        "192.0.2.1",
        "dl.fbaipublicfiles.com",
    ]


def test_record_mode_lets_the_call_through_and_records_it():
    with spy_socket_layer() as calls, NetworkGuard("record") as guard:
        with socket.socket() as sock, pytest.raises(ReachedSocketLayer):
            sock.connect(REMOTE)
    assert calls == [("connect", REMOTE)]
    assert guard.summary_lines() == [
        "network guard (record mode): 0 test(s) tried to reach a non-loopback host (1 attempt(s), let through):",
        "  (outside any test): connect 192.0.2.1:9",
    ]
    assert NetworkGuard("record").summary_lines() == [
        "network guard (record mode): 0 test(s) tried to reach a non-loopback host (0 attempt(s), let through)"
    ]
    assert NetworkGuard("block").summary_lines() == []


def test_loopback_connections_work_under_the_guard():
    with NetworkGuard() as guard, socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"
        with socket.socket() as closed:  # a closed loopback port: the real socket layer answers
            assert closed.connect_ex(("127.0.0.1", _free_port())) != 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"x", ("127.0.0.1", port))
        left, right = socket.socketpair()  # AF_UNIX
        with left, right:
            left.sendall(b"u")
            assert right.recv(1) == b"u"
    assert guard.attempts == []


def test_a_local_http_server_is_reachable_and_urllib_to_a_hub_fails_loudly(no_proxy):
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with NetworkGuard() as guard:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=5) as response:
                assert response.read() == b"hello"
            with pytest.raises(NetworkBlockedError, match="getaddrinfo huggingface.co:443"):
                urllib.request.urlopen("https://huggingface.co/suno/bark/resolve/main/text_2.pt", timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert [a.host for a in guard.attempts] == ["huggingface.co"]


def test_huggingface_hub_with_its_default_endpoint_fails_loudly(tmp_path, no_proxy):
    from huggingface_hub import hf_hub_download

    from bark_ablation.core.hub_access import hub_online, user_set_offline

    if user_set_offline():
        pytest.skip("HF_HUB_OFFLINE is set in the environment: huggingface_hub refuses before opening a socket")
    with hub_online(), NetworkGuard() as guard:  # as a download the user allowed
        with pytest.raises(NetworkBlockedError, match="huggingface.co:443"):
            hf_hub_download("suno/bark", "text.pt", cache_dir=tmp_path, endpoint="https://huggingface.co")
    # The refusal itself reached the test (not a connection error after retries and back-off).
    assert guard.attempts and {a.host for a in guard.attempts} == {"huggingface.co"}
    assert not list(tmp_path.rglob("*.pt"))


def test_allow_download_against_the_default_hub_fails_loudly(tmp_path, monkeypatch, no_proxy):
    """The download path with no HF_ENDPOINT: the guard, not a timeout or a cache, ends it."""
    from bark_ablation.models.cached_weights import CacheLocations
    from bark_ablation.models.real_weights import load_cached_models

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    locations = CacheLocations(tmp_path / "suno", tmp_path / "hf", tmp_path / "torch")
    with NetworkGuard(), pytest.raises(NetworkBlockedError, match="huggingface.co"):
        load_cached_models("bark", "cpu", locations=locations, allow_download=True)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_uninstall_restores_the_original_socket_functions():
    with network_guard.suspended():
        assert network_guard.installed_guards() == ()
        patched = [(socket.socket, name) for name in SOCKET_METHODS] + [(socket, name) for name in RESOLVERS]
        originals = [getattr(owner, name) for owner, name in patched]
        outer, inner = NetworkGuard(), NetworkGuard("record")
        outer.install()
        inner.install()
        assert all(getattr(owner, name) is not original for (owner, name), original in zip(patched, originals))
        assert network_guard.installed_guards() == (outer, inner)
        with pytest.raises(RuntimeError, match="reverse order"):
            outer.uninstall()
        inner.uninstall()
        outer.uninstall()
        assert all(getattr(owner, name) is original for (owner, name), original in zip(patched, originals))
        assert "connect" not in socket.socket.__dict__  # inherited from _socket.socket again, as before
        assert network_guard.installed_guards() == ()


def test_the_guard_refuses_to_restore_over_someone_elses_patch():
    with network_guard.suspended(), pytest.MonkeyPatch.context() as patch:
        guard = NetworkGuard().install()
        try:
            patch.setattr(socket.socket, "connect", lambda sock, address: None)
            with pytest.raises(RuntimeError, match="connect replaced by someone else"):
                guard.uninstall()
        finally:
            patch.undo()
            guard.uninstall()
        assert "connect" not in socket.socket.__dict__


def test_a_function_put_back_by_someone_else_is_wrapped_again():
    """pytest-socket 0.8 assigns socket.socket.connect back after every test, asked or not: the
    guard wraps again (reassert), and uninstall accepts a put-back original but no other patch."""
    remote = ("192.0.2.1", 80)  # numeric: resolving it sends nothing, with or without the guard
    with network_guard.suspended():
        original_connect, original_getaddrinfo = socket.socket.connect, socket.getaddrinfo
        guard = NetworkGuard().install()
        try:
            socket.socket.connect, socket.getaddrinfo = original_connect, original_getaddrinfo  # "put back"
            socket.getaddrinfo(*remote, flags=socket.AI_NUMERICHOST)  # known-bad: unguarded now
            assert guard.attempts == []
            assert guard.reassert() == ["socket.socket.connect", "socket.getaddrinfo"]
            with pytest.raises(NetworkBlockedError):
                socket.getaddrinfo(*remote, flags=socket.AI_NUMERICHOST)
            assert guard.reassert() == []
            socket.socket.connect = original_connect
        finally:
            guard.uninstall()
        assert "connect" not in socket.socket.__dict__ and socket.getaddrinfo is original_getaddrinfo


def test_reassert_leaves_a_monkeypatch_and_a_guard_on_top_alone():
    """Only a put-back original is wrapped again: a test's fake resolver and a guard installed
    over this one (a fixture's record-mode guard) stay as they are, and uninstall in order."""
    with network_guard.suspended():
        outer = NetworkGuard().install()
        try:
            with pytest.MonkeyPatch.context() as patch:
                fake = lambda *args, **kwargs: [("fake",)]  # noqa: E731
                patch.setattr(socket, "getaddrinfo", fake)
                assert outer.reassert() == [] and socket.getaddrinfo is fake
            with NetworkGuard("record") as inner:
                assert outer.reassert() == [] and inner.reassert() == []
                with pytest.raises(NetworkBlockedError):  # the inner one records, then calls the outer one
                    socket.getaddrinfo("192.0.2.1", 80, flags=socket.AI_NUMERICHOST)
            assert len(inner.attempts) == 1 and len(outer.attempts) == 1
        finally:
            outer.uninstall()


PUTS_SOCKET_BACK = """
import socket

_true_getaddrinfo, _true_connect = socket.getaddrinfo, socket.socket.connect


def pytest_runtest_teardown():
    # As pytest-socket 0.8 does after every test, whether or not it patched anything.
    socket.getaddrinfo, socket.socket.connect = _true_getaddrinfo, _true_connect
"""

TWO_LOOKUPS = """
import socket


def test_first():
    socket.getaddrinfo("192.0.2.1", 80, flags=socket.AI_NUMERICHOST)


def test_second():
    socket.getaddrinfo("192.0.2.1", 80, flags=socket.AI_NUMERICHOST)
"""


def test_the_guard_holds_after_a_plugin_puts_socket_back(pytester):
    """Every test is guarded, not only the first, and the session ends cleanly (it crashed at
    unconfigure before: the guard refused to restore over the put-back function)."""
    enable_plugin(pytester)
    pytester.makeconftest(f'pytest_plugins = ("bark_ablation.pytest_plugin",)\n{PUTS_SOCKET_BACK}')
    pytester.makepyfile(test_lookups=TWO_LOOKUPS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*refused 2 attempt(s)*made by 2 test(s)*"])
    assert "RuntimeError" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    "value, mode",
    [(None, "block"), ("", "block"), ("record", "record"), ("refuse", "refuse"), (" Block ", "block"), ("off", "off")],
)
def test_mode_from_the_environment(value, mode):
    environ = {} if value is None else {MODE_ENV: value}
    assert network_guard.mode_from_environment(environ) == mode


def test_unknown_mode_is_refused():
    with pytest.raises(
        ValueError, match="BARK_ABLATION_NETWORK_GUARD='loose': must be one of block, record, refuse, off"
    ):
        network_guard.mode_from_environment({MODE_ENV: "loose"})
    with pytest.raises(ValueError, match="must be one of block, record, refuse, got 'off'"):
        NetworkGuard("off")


def test_refuse_mode_answers_as_an_offline_machine_and_counts():
    """refuse: the attempt is recorded and fails with the OSError a machine without a network
    gives (so code that tolerates being offline carries on), before any packet leaves."""
    with network_guard.suspended(), NetworkGuard("refuse") as guard:
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("huggingface.co", 443)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with pytest.raises(ConnectionRefusedError):
                sock.connect(("192.0.2.1", 443))  # TEST-NET-1: would never answer if it were sent
        finally:
            sock.close()
        assert socket.getaddrinfo("localhost", 80)  # loopback untouched
    assert [(a.operation, a.host) for a in guard.attempts] == [
        ("getaddrinfo", "huggingface.co"),
        ("connect", "192.0.2.1"),
    ]
    assert (
        guard.summary_lines()[0].startswith("network guard (refuse mode): 0 test(s)")
        and "2 attempt(s), answered as offline" in guard.summary_lines()[0]
    )


INNER_TESTS = """
import socket

from bark_ablation.testing.network_guard import PLUGIN_NAME


def test_reaches_out():
    with socket.socket() as sock:
        sock.connect(("192.0.2.1", 9))


def test_swallows_it():
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except Exception:
        pass


def test_stays_home(request):
    registered = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    print("GUARD", None if registered is None else registered.guard.mode)
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    monkeypatch.delenv(MODE_ENV, raising=False)
    enable_plugin(pytester)
    pytester.makepyfile(test_inner=INNER_TESTS)
    before = network_guard.installed_guards()
    yield pytester
    assert network_guard.installed_guards() == before  # the inner session's guard was uninstalled


def test_plugin_fails_the_tests_that_reach_out_and_names_them(inner):
    result = inner.runpytest_inprocess("-s")
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*GUARD block*",
            "*NetworkBlockedError: network access blocked: connect 192.0.2.1:9 (test test_inner.py::test_reaches_out)*",
            "network guard: refused 2 attempt(s) to reach a non-loopback host, made by 2 test(s); "
            "the session fails because of them:",
            "  test_inner.py::test_reaches_out: connect 192.0.2.1:9",
            "  test_inner.py::test_swallows_it: getaddrinfo huggingface.co:443",
        ]
    )


def test_a_swallowed_refusal_still_fails_the_session(inner):
    result = inner.runpytest_inprocess("-k", "swallows")
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["  test_inner.py::test_swallows_it: getaddrinfo huggingface.co:443"])


def test_a_swallowed_refusal_in_an_xdist_worker_still_fails_the_session(inner):
    """Under pytest-xdist (the README's `pytest -n 2`) the attempt happens in a worker; the worker
    hands it to the controller, which names it and fails the session."""
    pytest.importorskip("xdist")
    result = inner.runpytest_inprocess("-n", "2", "-k", "swallows")
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["network guard: refused 1 attempt(s)*", "  test_inner.py::test_swallows_it: getaddrinfo huggingface.co:443"]
    )


def test_plugin_record_mode_reports_the_count(inner, monkeypatch):
    monkeypatch.setenv(MODE_ENV, "record")
    result = inner.runpytest_inprocess("-s", "-k", "stays_home")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*GUARD record*",
            "network guard (record mode): 0 test(s) tried to reach a non-loopback host (0 attempt(s), let through)",
        ]
    )


def test_plugin_can_be_turned_off(inner):
    result = inner.runpytest_inprocess("-s", "-k", "stays_home", "--bark-allow-network")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*GUARD None*"])
    result.stdout.no_fnmatch_line("network guard*")


def test_plugin_refuses_an_unknown_mode_and_a_usage_error_leaves_no_guard(inner, monkeypatch):
    monkeypatch.setenv(MODE_ENV, "loose")
    result = inner.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*BARK_ABLATION_NETWORK_GUARD='loose': must be one of block, record, refuse, off*"])
    monkeypatch.delenv(MODE_ENV)
    result = inner.runpytest_inprocess("--bark-golden-force-regen", "--bark-golden-regen-all")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # raised after the guard was installed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
