"""Hugging Face clients stay offline unless the user allowed downloads.

huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is first imported, into
``huggingface_hub.constants.HF_HUB_OFFLINE``; every client (huggingface_hub, transformers,
kernels) reads that constant at call time. Some releases reach the Hub as a side effect of an
import: transformers 5.25.0 asks ``kernels`` to check kernel publishers while
``transformers.models.bark.modeling_bark`` is imported (4 look-ups of huggingface.co per import,
``docs/upstream/import-contacts-the-hub.md``), and where connections hang instead of being
refused, the import waits for the client's timeouts.

So bark-ablation puts the clients offline before anything imports them: the CLI at start
(:func:`keep_hub_offline`, unless ``--allow-download``), the opted-in pytest session at
configure (unless ``--bark-allow-network``). A download the user allowed (``allow_download=True``)
lifts only the offline setting bark-ablation imposed, for its own duration (:func:`hub_online`);
an ``HF_HUB_OFFLINE`` the user set stays in force.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

OFFLINE_ENV = "HF_HUB_OFFLINE"
"""The variable huggingface_hub reads at import (``TRANSFORMERS_OFFLINE`` is its alias)."""
IMPOSED_ENV = "BARK_ABLATION_HUB_OFFLINE"
"""Set to ``1`` beside ``HF_HUB_OFFLINE=1`` when bark-ablation, not the user, switched the clients
offline. It lives in the environment, not in a module, so every copy of this module (pytester
re-imports modules in in-process sessions) and every child process reads the same answer."""
_TRUE = {"1", "ON", "YES", "TRUE"}


def _set_imported_constant(offline: bool) -> None:
    """Set huggingface_hub's frozen copy of the setting, if huggingface_hub is imported already."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = offline


def imposed() -> bool:
    """Whether the offline setting in force is bark-ablation's own (:func:`keep_hub_offline`)."""
    return os.environ.get(IMPOSED_ENV) == "1" and os.environ.get(OFFLINE_ENV) == "1"


def user_set_offline() -> bool:
    """Whether the environment (not bark-ablation) asks for offline mode."""
    if imposed():
        return False
    values = (os.environ.get(OFFLINE_ENV), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any((value or "").strip().upper() in _TRUE for value in values)


def keep_hub_offline() -> Callable[[], None]:
    """Switch the Hugging Face clients offline, in this process and the processes it starts
    (``HF_HUB_OFFLINE=1`` in ``os.environ``, and huggingface_hub's constant if it is imported).
    Call before transformers or huggingface_hub is imported. Returns a function that restores
    the previous state (the CLI calls it on exit, the pytest plugin at unconfigure)."""
    saved = {name: os.environ.get(name) for name in (OFFLINE_ENV, IMPOSED_ENV)}
    constants = sys.modules.get("huggingface_hub.constants")
    previous_constant = getattr(constants, "HF_HUB_OFFLINE", None)
    if not user_set_offline():
        os.environ[IMPOSED_ENV] = "1"
    os.environ[OFFLINE_ENV] = "1"
    _set_imported_constant(True)

    def restore() -> None:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = previous_constant
        else:
            _set_imported_constant(user_set_offline() or imposed())

    return restore


@contextlib.contextmanager
def hub_online() -> Iterator[None]:
    """The Hugging Face clients online for the duration of an allowed download, when the offline
    setting in force is bark-ablation's own (:func:`keep_hub_offline`); an offline mode the user
    set is left as it is, so the download fails with the client's own offline error."""
    if not imposed():
        yield
        return
    os.environ[OFFLINE_ENV] = "0"
    _set_imported_constant(False)
    try:
        yield
    finally:
        os.environ[OFFLINE_ENV] = "1"
        _set_imported_constant(True)
