"""Import contacts: how often importing a module tries to reach a host other than this machine.

Some releases reach the Hugging Face Hub as a side effect of being imported (transformers 5.25.0's
Bark module has ``kernels`` check kernel publishers on huggingface.co,
``docs/upstream/import-contacts-the-hub.md``). :func:`count_import_contacts` measures that without
a packet leaving the machine: it imports the module in a fresh process of this interpreter, with
this process's environment (so ``PYTHONPATH``, and with it a release's overlay, is the same) minus
the variables that put the Hugging Face clients offline (:data:`OFFLINE_VARIABLES`), under a
:class:`~bark_ablation.testing.network_guard.NetworkGuard` in ``refuse`` mode: every attempt to
reach a non-loopback host is recorded and answered as a machine without a network answers it
(``socket.gaierror`` for a look-up, ``ConnectionRefusedError`` for a connection), before the call
reaches the operating system.

A fresh process, because a module imported already (here, by the probes' own run) would not run
its import-time code again. The guard is installed before anything but the standard library is
imported: the child sets up ``bark_ablation``'s packages without running their ``__init__``
(which imports torch and numpy) and imports only :mod:`bark_ablation.testing.network_guard` (and the
standard library) before the guard is in place. The guard sees what Python's ``socket`` module
sees; native code that opens sockets itself is not counted (see the network guard's docstring).

This module imports only the standard library at its top, so that the child can run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bark_ablation.core.errors import ReleaseError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
"""Removed from the child's environment: the import is measured as a user without them sees it
(bark-ablation's own CLI and pytest sessions set ``HF_HUB_OFFLINE=1``)."""
IMPORT_TIMEOUT_S = 600
"""Seconds the child may take before the measurement is abandoned (ReleaseError)."""

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_CHILD = """\
import sys, types
root = sys.argv[1]
for name, folder in (("bark_ablation", ""), ("bark_ablation.core", "/core"), ("bark_ablation.releases", "/releases")):
    package = types.ModuleType(name)
    package.__path__ = [root + folder]
    sys.modules[name] = package
from bark_ablation.releases.import_contacts import _child
sys.exit(_child(sys.argv[2], sys.argv[3]))
"""
"""The child's program: packages without their ``__init__``, then :func:`_child`."""


@dataclass(frozen=True)
class ImportContacts:
    """What importing ``module`` in a fresh process tried.

    Attributes:
        module: the module imported (dotted name).
        attempts: every refused attempt, in order, as (operation, target): ``("getaddrinfo",
            "huggingface.co:443")``.
        hosts: the hosts tried (names or addresses, without port), first tried first.
        error: the import's exception (``Type: message``), None when the module imported.
        import_s: seconds the import took in the child (wall clock).
        process_s: seconds the child process took, start to exit (wall clock).
    """

    module: str
    attempts: tuple[tuple[str, str], ...]
    hosts: tuple[str, ...]
    error: str | None
    import_s: float
    process_s: float

    def targets(self) -> str:
        """``getaddrinfo huggingface.co:443 x4, ...``: each operation and target with its count."""
        counts = Counter(f"{operation} {target}" for operation, target in self.attempts)
        return ", ".join(f"{what} x{count}" if count > 1 else what for what, count in counts.items())


def count_import_contacts(module: str, *, timeout_s: float = IMPORT_TIMEOUT_S) -> ImportContacts:
    """Import ``module`` in a fresh process under a refuse-mode network guard and return what it
    tried (see the module docstring). The child gets this process's environment without
    :data:`OFFLINE_VARIABLES`.

    ReleaseError when the child gives no result (it crashed, or ran past ``timeout_s`` seconds).
    A module that fails to import is a result with ``error`` set, not an exception.
    """
    return PendingImportContacts(module, timeout_s=timeout_s).result()


class PendingImportContacts:
    """:func:`count_import_contacts` started now and collected later, so the caller can work while
    the child imports (the release workload runs its untimed surface checks meanwhile; its
    generation runs on one thread, so the child has the other core). A thread waits on the child
    from the start, draining its output (a chatty child never blocks on a full pipe) and noting
    when it ended, so ``process_s`` is the child's own time. :meth:`result` waits for the thread;
    a failure is raised again on every later call, never measured twice."""

    def __init__(self, module: str, *, timeout_s: float = IMPORT_TIMEOUT_S):
        self.module, self.timeout_s = module, timeout_s
        self._scratch = tempfile.TemporaryDirectory(prefix="bark-ablation-import-")
        self._out = Path(self._scratch.name) / "contacts.json"
        environment = {key: value for key, value in os.environ.items() if key not in OFFLINE_VARIABLES}
        self._started = time.perf_counter()
        command = [sys.executable, "-c", _CHILD, str(_PACKAGE_ROOT), module, str(self._out)]
        # cwd: an empty directory, so nothing in the caller's working directory shadows a module.
        self._process = subprocess.Popen(
            command, env=environment, cwd=self._scratch.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._outcome: ImportContacts | ReleaseError | None = None
        self._waiter = threading.Thread(target=self._wait, name=f"import-contacts {module}", daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        try:
            _, stderr = self._process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            self._outcome = ReleaseError(f"import of {self.module}: no result within {self.timeout_s:.0f} s")
            self._scratch.cleanup()
            return
        ended = time.perf_counter()
        try:
            if self._process.returncode != 0 or not self._out.is_file():
                last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
                self._outcome = ReleaseError(
                    f"import of {self.module}: the measuring process exited "
                    f"{self._process.returncode} without a result: {last}"
                )
                return
            record = json.loads(self._out.read_text(encoding="utf-8"))
            attempts = tuple((operation, target) for operation, target in record["attempts"])
            self._outcome = ImportContacts(
                self.module,
                attempts,
                tuple(record["hosts"]),
                record["error"],
                float(record["import_s"]),
                ended - self._started,
            )
        finally:
            self._scratch.cleanup()

    def result(self) -> ImportContacts:
        self._waiter.join()
        if isinstance(self._outcome, ReleaseError):
            raise self._outcome
        return self._outcome


def _child(module: str, out: str) -> int:
    """In the fresh process: guard, import ``module``, write the attempts to ``out`` (JSON)."""
    from bark_ablation.testing.network_guard import NetworkGuard

    guard = NetworkGuard("refuse").install()
    started = time.perf_counter()
    error = None
    try:
        __import__(module)
    except BaseException as raised:  # the result says how the import failed; the parent decides
        lines = str(raised).strip().splitlines()
        error = f"{type(raised).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
    import_s = time.perf_counter() - started
    # The guard stays installed: the process ends here, and writing the result needs no network.
    record = {
        "module": module,
        "attempts": [(a.operation, a.target) for a in guard.attempts],
        "hosts": list(dict.fromkeys(a.host for a in guard.attempts)),
        "error": error,
        "import_s": import_s,
    }
    Path(out).write_text(json.dumps(record) + "\n", encoding="utf-8")
    return 0
