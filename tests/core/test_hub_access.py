"""No Hub contact unless the user allowed downloads (:mod:`bark_ablation.core.hub_access`).

transformers 5.25.0 reaches huggingface.co while its Bark module is imported (4 look-ups; the
upstream report docs/upstream/import-contacts-the-hub.md). The CLI and the test session switch
the Hugging Face clients offline before anything imports them, so neither makes an attempt;
``--allow-download`` leaves them online, and there the same import does reach out: that twin
shows the count can be above 0.

The fresh-process checks run the CLI as a user's shell would (a new interpreter), with the
network guard in ``refuse`` mode installed before anything is imported: every attempt is
counted and answered as an offline machine would, and none leaves this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from upstream_reports import first_affected, predates

from bark_ablation.core import hub_access

REPORT = "import-contacts-the-hub"
"""The upstream report naming the first transformers release whose Bark import contacts the Hub."""


COUNT_ATTEMPTS = r"""
import json, sys
from bark_ablation.testing.network_guard import NetworkGuard

guard = NetworkGuard("refuse").install()
from bark_ablation import cli

status = cli.main(sys.argv[1:])
print(json.dumps({"status": status, "attempts": [f"{a.operation} {a.target}" for a in guard.attempts]}))
"""


def cli_attempts(tmp_path, *extra: str) -> tuple[int, list[str]]:
    """``bark-ablation run --implementation transformers`` (tiny set, one short cell) in a fresh
    interpreter, the user's environment without any offline setting; the attempts it made."""
    environment = {
        key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    argv = [
        "run",
        "--implementation",
        "transformers",
        "--model-set",
        "tiny",
        "--prompt",
        "en_speaker_0",
        "--text",
        "Hello there.",
        "--cells",
        "scf",
        "--seeds",
        "0",
        "--max-duration",
        "0.2",
        "--no-study",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]
    result = subprocess.run(
        [sys.executable, "-c", COUNT_ATTEMPTS, *argv], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["status"] == 0, result.stderr
    return len(record["attempts"]), record["attempts"]


def test_the_cli_on_transformers_makes_no_network_attempt(tmp_path):
    count, attempts = cli_attempts(tmp_path)
    assert count == 0, f"the CLI reached out {count} time(s) without --allow-download: {attempts}"


def test_allow_download_leaves_the_clients_online_and_the_import_reaches_out(tmp_path):
    """Known-bad twin: without the offline setting (``--allow-download``), the same run on a
    release that contacts the Hub at import is counted, so the check above can fail."""
    import transformers

    if predates(REPORT):
        pytest.skip(
            f"transformers {transformers.__version__} predates {first_affected(REPORT)}, the first "
            f"release whose Bark import contacts the Hub; CI's newest lane runs this twin"
        )
    count, attempts = cli_attempts(tmp_path, "--allow-download")
    assert count > 0 and all("huggingface.co" in attempt for attempt in attempts), attempts


def test_the_session_runs_the_clients_offline():
    """This test session (the plugin, without --bark-allow-network) switched the clients offline."""
    from huggingface_hub import constants

    assert os.environ.get("HF_HUB_OFFLINE") == "1" and constants.HF_HUB_OFFLINE is True


def test_keep_offline_restores_what_it_found(monkeypatch):
    from huggingface_hub import constants

    with hub_access_suspended(monkeypatch):
        assert "HF_HUB_OFFLINE" not in os.environ and constants.HF_HUB_OFFLINE is False
        restore = hub_access.keep_hub_offline()
        assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True
        assert not hub_access.user_set_offline()
        with hub_access.hub_online():
            assert os.environ["HF_HUB_OFFLINE"] == "0" and constants.HF_HUB_OFFLINE is False
        assert constants.HF_HUB_OFFLINE is True
        restore()
        assert "HF_HUB_OFFLINE" not in os.environ and constants.HF_HUB_OFFLINE is False


def test_an_offline_mode_the_user_set_is_not_lifted_by_an_allowed_download(monkeypatch):
    from huggingface_hub import constants

    with hub_access_suspended(monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        restore = hub_access.keep_hub_offline()
        assert hub_access.user_set_offline()
        with hub_access.hub_online():
            assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
        restore()
        assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True


@contextlib.contextmanager
def hub_access_suspended(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The state before this session's plugin switched the clients offline: no offline variables,
    huggingface_hub's constant off (monkeypatch restores all of it)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv(hub_access.IMPOSED_ENV, raising=False)
    yield
