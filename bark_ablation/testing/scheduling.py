"""pytest-xdist scheduling for a suite whose files share expensive session fixtures."""

from __future__ import annotations

from collections.abc import Mapping


def shared_file_scheduler(config, log, shared_files: Mapping[str, str]):
    """A scheduler for ``pytest_xdist_make_scheduler``: ``--dist loadfile``, except that the test
    files of ``shared_files`` (path relative to the rootdir -> unit name) that name the same unit
    run on one worker, so the session fixtures they share are built once. ``None`` (xdist's own
    choice) for any other ``--dist``. pytest-xdist's ``xdist_group`` marks cannot do this: they
    make every unmarked test a unit of its own, splitting module fixtures."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return shared_files.get(scope, scope)

    return SharedFileScheduling(config, log)
