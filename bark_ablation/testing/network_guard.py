"""No network, proven: refuse every attempt to reach a host other than this machine.

The suite must never depend on a model hub being reachable, so a test that would reach one has
to fail loudly instead of passing offline by luck (a hub client that cannot connect often falls
back to whatever is cached and carries on). :class:`NetworkGuard` patches Python's ``socket``
module so that, while it is installed:

* connecting to, or sending a datagram to, anything but loopback (``127.0.0.0/8``, ``::1``,
  ``localhost``; also the unspecified address ``0.0.0.0`` / ``::``, which means this host) raises
  :class:`NetworkBlockedError` before the call reaches the operating system, so no packet is
  ever sent: ``socket.socket.connect``, ``connect_ex``, ``sendto``, ``sendmsg``;
* looking up a host name that is not local raises it too (resolving a hub's host name is the
  first thing a client does, and the lookup itself is network traffic): ``socket.getaddrinfo``,
  ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``, ``getnameinfo``;
* Unix sockets, socket pairs and every loopback address pass untouched, so local test servers,
  pytester and pytest-xdist's pipes keep working.

Everything built on those calls is covered: ``socket.create_connection``, ``ssl``,
``http.client``, ``urllib``, ``httpx`` / ``httpx2`` (huggingface_hub), ``requests``, ``asyncio``.
Every refused attempt is recorded (:class:`Attempt`: operation, host, port and the test that
made it, when the pytest plugin has said which test is running). In ``record`` mode the guard
records and lets the call through, to measure what a suite does without changing it. In
``refuse`` mode it records and answers as a machine without a network would, with the
``OSError`` the operating system gives (``socket.gaierror`` for a look-up,
``ConnectionRefusedError`` otherwise), before the call reaches it: to count what code that
tolerates being offline tries, without a packet leaving and without failing it.

Under pytest (:func:`activate_for_pytest`) the refusal fails the test that made it, the session
ends with a line naming every test that tried, and a session whose tests all passed still
fails when something was refused: code under test that swallows the error (huggingface_hub
does, for its best-effort side requests) cannot hide the attempt.

:class:`NetworkBlockedError` is deliberately NOT an ``OSError``: clients treat ``OSError`` as
"offline" and retry (huggingface_hub backs off for seconds) or fall back to cached files, which
is exactly how a test passes offline by luck. An exception of another type goes straight
through them to the test.

What it cannot see:

* other processes: subprocesses (headless Chromium for report checks, espeak-ng, ``pip``,
  ``git``, ``runpytest_subprocess``). pytest-xdist workers load the plugin themselves, so they
  are guarded, and each hands its attempts to the controller when it finishes
  (:func:`add_worker_attempts`), which summarises them and fails the session;
* native code that opens sockets without Python's ``socket`` module: C, C++ or Rust extensions
  (``hf_xet``'s downloader, libcurl, gRPC, torch.distributed's TCP store);
* code holding a reference taken before the guard was installed (``from socket import
  getaddrinfo`` at import time, or ``_socket.socket`` used directly).

Pure standard library; the pytest side is :func:`activate_for_pytest`, called by the plugin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import os
import socket
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bark_ablation.core.errors import BarkAblationError

MODE_ENV = "BARK_ABLATION_NETWORK_GUARD"
"""Environment variable choosing the pytest session's mode: ``block`` (default), ``record``
(log, do not raise), ``refuse`` (log, answer as offline) or ``off``. ``--bark-allow-network`` means
``off``."""
GUARD_MODES = ("block", "record", "refuse")
MODES = (*GUARD_MODES, "off")
PLUGIN_NAME = "bark-ablation-network-guard"
"""Name under which :func:`activate_for_pytest` registers the session's guard with pytest."""

_LOCAL_NAMES = frozenset({"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_INET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
_ABSENT = object()


class NetworkBlockedError(BarkAblationError):
    """A connection, datagram or name lookup aimed at a host other than this machine.

    Not an ``OSError`` (see the module docstring): network clients must not mistake it for
    "offline" and retry or fall back to a cache.
    """

    def __init__(self, attempt: Attempt):
        self.attempt = attempt
        where = f" (test {attempt.test})" if attempt.test else ""
        super().__init__(
            f"network access blocked: {attempt.operation} {attempt.target}{where}; tests must not "
            f"reach the network (only loopback is allowed: 127.0.0.0/8, ::1, localhost). Serve what "
            f"the test needs on 127.0.0.1, or run pytest with --bark-allow-network"
        )


@dataclass(frozen=True)
class Attempt:
    """One attempt to reach a non-local host: ``operation`` is the patched call
    (``connect``, ``getaddrinfo``, ...), ``test`` the pytest node id (None outside a test)."""

    operation: str
    host: str
    port: int | str | None
    test: str | None

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def is_local_host(host: object) -> bool:
    """Whether ``host`` (a name or an address, str or bytes; None means "this host") never
    leaves this machine: loopback ``127.0.0.0/8`` and ``::1`` (also IPv4-mapped), the
    unspecified ``0.0.0.0`` / ``::``, ``localhost`` and names under ``.localhost`` (RFC 6761).
    Any other name is not local: only resolving it could tell, and resolving is traffic."""
    if host is None:
        return True
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])  # drop an IPv6 scope id
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


_installed: list[NetworkGuard] = []


@dataclass(frozen=True)
class _Patch:
    """One function the guard replaced: where (``owner.name``), the factory of its wrapper, the
    owner's own attribute before install (``_ABSENT`` when inherited), the function visible there
    before install, and the wrapper in place."""

    owner: Any
    name: str
    make: Callable
    own: Any
    before: Any
    wrapper: Any

    @property
    def qualified_name(self) -> str:
        """``socket.getaddrinfo``, ``socket.socket.connect``."""
        owner = (
            self.owner.__name__
            if isinstance(self.owner, types.ModuleType)
            else f"{self.owner.__module__}.{self.owner.__qualname__}"
        )
        return f"{owner}.{self.name}"


class NetworkGuard:
    """Patches ``socket`` so that non-local network access raises (``mode="block"``), is only
    recorded (``mode="record"``), or is answered as offline (``mode="refuse"``). Use as a context
    manager or with :meth:`install` / :meth:`uninstall`. Guards nest: each one calls whatever was in place when it was installed
    and restores exactly that when uninstalled, last installed first.

    ``attempts`` lists every refused (or, in record mode, observed) attempt; ``current_test``
    is stamped onto each one (the pytest plugin keeps it up to date).
    """

    def __init__(self, mode: str = "block"):
        if mode not in GUARD_MODES:
            raise ValueError(f"network guard mode must be one of {', '.join(GUARD_MODES)}, got {mode!r}")
        self.mode = mode
        self.attempts: list[Attempt] = []
        self.current_test: str | None = None
        self._saved: list[_Patch] = []

    @property
    def installed(self) -> bool:
        return self in _installed

    def install(self) -> NetworkGuard:
        if self.installed:
            raise RuntimeError("this network guard is already installed")
        for owner, name, make in _PATCHES:
            before = getattr(owner, name)
            wrapper = make(self, before)
            self._saved.append(_Patch(owner, name, make, owner.__dict__.get(name, _ABSENT), before, wrapper))
            setattr(owner, name, wrapper)
        _installed.append(self)
        return self

    def reassert(self) -> list[str]:
        """Wrap again every patched function that someone put back since :meth:`install` (the
        very function that was there before); returns their names.

        Other plugins patch ``socket`` too, and some undo their patch by assigning the function
        they saw at import time: pytest-socket 0.8 sets ``socket.socket.connect`` back after every
        test, whether or not it changed it, which removed this guard's check of connections from
        the second test on. The pytest plugin calls this before each test's setup and call.
        Anything else in place is left alone: another plugin's own patch, a test's monkeypatch,
        a guard installed on top of this one. Only the last installed guard reasserts."""
        if not _installed or _installed[-1] is not self:
            return []
        rewrapped = []
        for index, patch in enumerate(self._saved):
            if getattr(patch.owner, patch.name) is not patch.before:
                continue
            wrapper = patch.make(self, patch.before)
            setattr(patch.owner, patch.name, wrapper)
            self._saved[index] = dataclasses.replace(patch, wrapper=wrapper)
            rewrapped.append(patch.qualified_name)
        return rewrapped

    def uninstall(self) -> None:
        """Restore what :meth:`install` found. A function someone else already put back (the one
        that was there before install) is left as it is; one replaced by anything else raises
        RuntimeError, since restoring over it would undo another patch."""
        if not self.installed:
            return
        if _installed[-1] is not self:
            raise RuntimeError("network guards must be uninstalled in reverse order of installation")
        replaced = [
            patch.qualified_name
            for patch in self._saved
            if getattr(patch.owner, patch.name) not in (patch.wrapper, patch.before)
        ]
        if replaced:
            raise RuntimeError(
                f"network guard: {', '.join(replaced)} replaced by someone else while the "
                f"guard was installed; not restoring over it"
            )
        for patch in reversed(self._saved):
            if patch.own is _ABSENT:
                if patch.name in patch.owner.__dict__:
                    delattr(patch.owner, patch.name)
            else:
                setattr(patch.owner, patch.name, patch.own)
        self._saved.clear()
        _installed.pop()

    def __enter__(self) -> NetworkGuard:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def check(self, operation: str, host: object, port: object = None) -> None:
        """Record and (in block and refuse mode) refuse ``operation`` on ``host``:``port`` unless
        the host is local. Hosts that are neither str, bytes nor None are left to the real call."""
        if not isinstance(host, (str, bytes, bytearray)) or is_local_host(host):
            return
        text = bytes(host).decode("ascii", "replace") if isinstance(host, (bytes, bytearray)) else host
        attempt = Attempt(operation, text, port if isinstance(port, (int, str)) else None, self.current_test)
        self.attempts.append(attempt)
        if self.mode == "block":
            raise NetworkBlockedError(attempt)
        if self.mode == "refuse":
            raise _offline_error(attempt)

    def tests_that_tried(self) -> dict[str | None, list[Attempt]]:
        """Attempts grouped by test node id (None: outside any test), in first-seen order."""
        grouped: dict[str | None, list[Attempt]] = {}
        for attempt in self.attempts:
            grouped.setdefault(attempt.test, []).append(attempt)
        return grouped

    def summary_lines(self) -> list[str]:
        """Lines for the end of a test session: nothing when block mode refused nothing; in
        record mode always the count (0 is the result to report)."""
        grouped = self.tests_that_tried()
        if not grouped and self.mode == "block":
            return []
        tests = sum(1 for test in grouped if test is not None)
        if self.mode == "block":
            lines = [
                f"network guard: refused {len(self.attempts)} attempt(s) to reach a non-loopback "
                f"host, made by {tests} test(s); the session fails because of them:"
            ]
        else:
            answer = "let through" if self.mode == "record" else "answered as offline"
            lines = [
                f"network guard ({self.mode} mode): {tests} test(s) tried to reach a non-loopback host "
                f"({len(self.attempts)} attempt(s), {answer})" + (":" if grouped else "")
            ]
        for test, attempts in grouped.items():
            targets = list(dict.fromkeys(f"{a.operation} {a.target}" for a in attempts))
            shown = ", ".join(targets[:5]) + (f", ... ({len(targets) - 5} more)" if len(targets) > 5 else "")
            lines.append(f"  {test or '(outside any test)'}: {shown}")
        return lines


def installed_guards() -> tuple[NetworkGuard, ...]:
    """The guards installed now, first installed first."""
    return tuple(_installed)


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Uninstall every installed guard for the duration of the block, then reinstall them
    (same objects, same records). For tests of the guard itself; never for reaching a host."""
    guards = list(_installed)
    for guard in reversed(guards):
        guard.uninstall()
    try:
        yield
    finally:
        for guard in guards:
            guard.install()


def mode_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The mode :data:`MODE_ENV` asks for (default ``block``); ValueError for anything else."""
    value = (os.environ if environ is None else environ).get(MODE_ENV, "").strip().lower() or "block"
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r}: must be one of {', '.join(MODES)}")
    return value


def activate_for_pytest(config: Any) -> NetworkGuard | None:
    """Install the session's guard unless ``--bark-allow-network`` or ``BARK_ABLATION_NETWORK_GUARD=off``
    (the plugin's ``pytest_configure`` calls this). The guard is registered with pytest as
    :data:`PLUGIN_NAME`: it learns each test's node id, writes its summary at the end of the
    session, and is uninstalled at ``pytest_unconfigure``."""
    try:
        mode = "off" if config.getoption("--bark-allow-network") else mode_from_environment()
    except ValueError as error:
        import pytest

        raise pytest.UsageError(str(error)) from None
    if mode == "off":
        return None
    guard = NetworkGuard(mode).install()
    config.pluginmanager.register(_PytestSessionGuard(guard), PLUGIN_NAME)
    return guard


WORKER_OUTPUT_KEY = "bark_ablation_network_attempts"
"""Key of a pytest-xdist worker's attempts in its ``workeroutput``."""


def add_worker_attempts(config: Any, workeroutput: dict) -> None:
    """On the pytest-xdist controller: add a finished worker's attempts to the session's guard, so
    they are summarised and fail the session as if they had happened here."""
    registered = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if registered is not None:
        registered.guard.attempts.extend(Attempt(**fields) for fields in workeroutput.get(WORKER_OUTPUT_KEY, ()))


class _PytestSessionGuard:
    """pytest hooks of the session's guard (registered by :func:`activate_for_pytest`)."""

    def __init__(self, guard: NetworkGuard):
        self.guard = guard

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.guard.current_test = nodeid

    # Registered at configure time, after every installed plugin, so pytest calls these two
    # before the other plugins' implementations and before its own runner's (fixtures, then the
    # test): the guard is in place for a test's fixtures whatever the previous teardown put back,
    # and around whatever another plugin's setup patched in for the test itself.
    def pytest_runtest_setup(self, item: Any) -> None:
        self.guard.reassert()

    def pytest_runtest_call(self, item: Any) -> None:
        self.guard.reassert()

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.guard.current_test = None

    def pytest_sessionfinish(self, session: Any) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            # A pytest-xdist worker: hand the attempts to the controller, which summarises them
            # and fails its session (see add_worker_attempts); a worker's exit status is not seen.
            workeroutput[WORKER_OUTPUT_KEY] = [dataclasses.asdict(attempt) for attempt in self.guard.attempts]
        # A refused attempt fails the session even when the code under test swallowed the error.
        if self.guard.mode == "block" and self.guard.attempts and session.exitstatus == 0:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.guard.summary_lines():
            terminalreporter.write_line(line)

    def pytest_unconfigure(self, config: Any) -> None:
        self.guard.uninstall()


# -- the patches -------------------------------------------------------------------------------


def _offline_error(attempt: Attempt) -> OSError:
    """What a machine without a network answers: a failed look-up (the patched ``socket`` module
    functions), or a refused connection (the patched ``socket.socket`` methods)."""
    text = f"{attempt.operation} {attempt.target}: no network (bark-ablation network guard, refuse mode)"
    if attempt.operation in _RESOLVER_OPERATIONS:
        return socket.gaierror(socket.EAI_NONAME, text)
    return ConnectionRefusedError(errno.ECONNREFUSED, text)


def _address_host_port(address: object) -> tuple[object, object]:
    if isinstance(address, tuple) and len(address) >= 2:
        return address[0], address[1]
    return None, None  # malformed: the real call raises its own error


def _socket_method(operation: str, address_index: int | None) -> Callable:
    """Factory for a ``socket.socket`` method wrapper that checks the address argument
    (``address_index`` into the positional arguments; None: the last one)."""

    def make(guard: NetworkGuard, previous: Callable) -> Callable:
        def wrapper(sock, *args, **kwargs):
            if sock.family in _INET_FAMILIES and args:
                index = len(args) - 1 if address_index is None else address_index
                if index < len(args) and (operation != "sendto" or len(args) >= 2):
                    guard.check(operation, *_address_host_port(args[index]))
            return previous(sock, *args, **kwargs)

        wrapper.__name__ = wrapper.__qualname__ = operation
        wrapper.__doc__ = f"{operation}, refused by bark_ablation.testing.network_guard for non-loopback addresses"
        return wrapper

    return make


def _resolver(operation: str, host_port: Callable[..., tuple[object, object]]) -> Callable:
    def make(guard: NetworkGuard, previous: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            guard.check(operation, *host_port(*args, **kwargs))
            return previous(*args, **kwargs)

        wrapper.__name__ = wrapper.__qualname__ = operation
        wrapper.__doc__ = f"socket.{operation}, refused by bark_ablation.testing.network_guard for non-local hosts"
        return wrapper

    return make


def _getaddrinfo_host_port(host=None, port=None, *args, **kwargs):
    return host, port


def _host_only(host=None, *args, **kwargs):
    return host, None


def _getnameinfo_host_port(sockaddr=None, *args, **kwargs):
    return _address_host_port(sockaddr)


_PATCHES: tuple[tuple[Any, str, Callable], ...] = (
    (socket.socket, "connect", _socket_method("connect", 0)),
    (socket.socket, "connect_ex", _socket_method("connect_ex", 0)),
    (socket.socket, "sendto", _socket_method("sendto", None)),  # sendto(data[, flags], address)
    (socket.socket, "sendmsg", _socket_method("sendmsg", 3)),  # sendmsg(buffers, ancdata, flags, address)
    (socket, "getaddrinfo", _resolver("getaddrinfo", _getaddrinfo_host_port)),
    (socket, "gethostbyname", _resolver("gethostbyname", _host_only)),
    (socket, "gethostbyname_ex", _resolver("gethostbyname_ex", _host_only)),
    (socket, "gethostbyaddr", _resolver("gethostbyaddr", _host_only)),
    (socket, "getnameinfo", _resolver("getnameinfo", _getnameinfo_host_port)),
)

_RESOLVER_OPERATIONS = frozenset(name for owner, name, _ in _PATCHES if owner is socket)
"""The name look-ups among the patches (``socket`` module functions, not socket methods)."""
