"""``--allow-download`` for real, against a local hub on 127.0.0.1.

:class:`FakeHub` serves the tiny models written as a real cache (``write_fake_cache``) in the
layouts the real servers use:

* ``{HF_ENDPOINT}/suno/bark/resolve/main/<file>``: Bark's checkpoints are LFS files, so the
  Hub answers with a redirect to its CDN carrying the metadata (``X-Repo-Commit``,
  ``X-Linked-Etag`` = the file's SHA-256, ``X-Linked-Size``); the "CDN" is the same server
  under another host name (``localhost``), which huggingface_hub does not follow on its HEAD;
* ``{HF_ENDPOINT}/bert-base-multilingual-cased/resolve/main/<file>``: a renamed repository, so a
  same-host 307 to ``google-bert/bert-base-multilingual-cased``, which answers with the file
  itself (``ETag`` = its git blob SHA-1, ``X-Repo-Commit``);
* ``/encodec/v0/encodec_24khz-<first 8 hex of its SHA-256>.th``, Meta's layout with torch hub's
  hash prefix.

The tests point ``HF_ENDPOINT`` and ``BARK_ABLATION_ENCODEC_URL`` at it, the caches at a tmp
directory, and run under the network guard like every test: nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from checkpoint_writers import write_fake_cache

from bark_ablation import cli
from bark_ablation.core.errors import MissingWeightsError
from bark_ablation.core.implementation import ModelSet
from bark_ablation.core.params import GenerationParams
from bark_ablation.generation.pipeline import generate
from bark_ablation.implementations.registry import get_implementation
from bark_ablation.models.cached_weights import (
    BARK_REPO,
    CHECKPOINTS,
    ENCODEC_CHECKPOINT,
    TOKENIZER_REPO,
    CacheLocations,
    check_tokenizer_vocab,
    missing_files,
)
from bark_ablation.models.real_weights import load_cached_models
from bark_ablation.models.weight_downloads import ENCODEC_URL_ENV, TOKENIZER_FILES, DownloadError, download_missing
from bark_ablation.testing.network_guard import NetworkGuard

REPO_COMMIT = hashlib.sha1(b"fake hub commit").hexdigest()
RENAMED_TOKENIZER_REPO = "google-bert/bert-base-multilingual-cased"
CDN_HOST = "localhost"
ENCODEC = "encodec"
"""Key of the EnCodec file among the hub's files (the others are keyed by file name)."""
WHAT = {
    "text_2.pt": "Bark text checkpoint text_2.pt",
    "coarse_2.pt": "Bark coarse checkpoint coarse_2.pt",
    "fine_2.pt": "Bark fine checkpoint fine_2.pt",
    "vocab.txt": f"tokenizer {TOKENIZER_REPO} (vocab.txt)",
    ENCODEC: f"EnCodec 24 kHz weights {ENCODEC_CHECKPOINT}",
}
"""What ``missing_files`` calls each file."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Published:
    """A file as the hub publishes it (its ETag, size and URL hash come from ``data``), and
    what actually goes out: ``served`` (default ``data``), cut in half and the connection
    closed if ``interrupt`` (then every later GET of it answers 503)."""

    data: bytes
    served: bytes | None = None
    interrupt: bool = False
    cut: bool = False


class FakeHub:
    """The Hugging Face Hub and Meta's file server, in their URL layouts, on 127.0.0.1."""

    def __init__(self, files: dict[str, bytes]):
        self.files = {key: Published(data) for key, data in files.items()}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub.respond(self, head=True)

            def do_GET(self):
                hub.respond(self, head=False)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # shutdown() waits for the serving loop's next poll: 0.5 s by default, on every test.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def encodec_url(self) -> str:
        return f"{self.endpoint}/encodec/v0/encodec_24khz-{sha256(self.files[ENCODEC].data)[:8]}.th"

    def respond(self, handler: http.server.BaseHTTPRequestHandler, head: bool) -> None:
        path = urlsplit(handler.path).path
        self.requests.append((handler.command, path))
        resolve = re.fullmatch(r"/(.+)/resolve/([^/]+)/([^/]+)", path)
        if resolve:
            repo, revision, file = resolve.groups()
            if repo == TOKENIZER_REPO:  # the Hub's redirect for a renamed repository
                return self.send(handler, 307, {"Location": f"/{RENAMED_TOKENIZER_REPO}/resolve/{revision}/{file}"})
            if repo == RENAMED_TOKENIZER_REPO and file in TOKENIZER_FILES and file in self.files:
                published = self.files[file]
                return self.send_file(
                    handler,
                    published,
                    head,
                    {"ETag": f'"{git_blob_sha1(published.data)}"', "X-Repo-Commit": REPO_COMMIT},
                )
            if repo == BARK_REPO and file in self.files:
                data = self.files[file].data
                return self.send(
                    handler,
                    302,
                    {
                        "Location": f"http://{CDN_HOST}:{self.port}/lfs/{sha256(data)}",
                        "X-Repo-Commit": REPO_COMMIT,
                        "X-Linked-Etag": f'"{sha256(data)}"',
                        "X-Linked-Size": str(len(data)),
                        "ETag": f'"{git_blob_sha1(b"lfs pointer " + data[:64])}"',
                    },
                )
            known = repo in (BARK_REPO, RENAMED_TOKENIZER_REPO)
            return self.send(
                handler,
                404,
                {"X-Error-Code": "EntryNotFound" if known else "RepoNotFound", "X-Repo-Commit": REPO_COMMIT},
            )
        lfs = re.fullmatch(r"/lfs/([0-9a-f]{64})", path)
        if lfs:
            for published in self.files.values():
                if sha256(published.data) == lfs.group(1):
                    return self.send_file(handler, published, head, {"ETag": f'"{lfs.group(1)}"'})
        encodec = re.fullmatch(r"/encodec/v0/encodec_24khz-([0-9a-f]{8})\.th", path)
        if encodec and sha256(self.files[ENCODEC].data).startswith(encodec.group(1)):
            return self.send_file(handler, self.files[ENCODEC], head, {})
        return self.send(handler, 404, {})

    def send(self, handler, status: int, headers: dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": "0", **headers}.items():
            handler.send_header(name, value)
        handler.end_headers()

    def send_file(self, handler, published: Published, head: bool, headers: dict[str, str]) -> None:
        if published.cut and not head:
            return self.send(handler, 503, {})
        body = published.data if published.served is None else published.served
        self.send(
            handler, 200, {**headers, "Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
        )
        if head:
            return
        if published.interrupt:
            published.cut = True
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(body)

    def downloads(self) -> list[str]:
        """Paths fetched with GET."""
        return [path for method, path in self.requests if method == "GET"]


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_models) -> dict[str, bytes]:
    """The bytes of a tiny cache written as the real one (once per module)."""
    root = tmp_path_factory.mktemp("published")
    locations = CacheLocations(root / "suno" / "bark_v0", root / "hf" / "hub", root / "torch" / "hub")
    write_fake_cache(locations, tiny_models)
    files = {name: (locations.bark_dir / name).read_bytes() for name in CHECKPOINTS["bark"].values()}
    snapshot = next((locations.hub_repo_dir(TOKENIZER_REPO) / "snapshots").iterdir())
    files.update({name: (snapshot / name).read_bytes() for name in TOKENIZER_FILES})
    files[ENCODEC] = locations.encodec_path.read_bytes()
    return files


@pytest.fixture
def caches(tmp_path, monkeypatch) -> CacheLocations:
    """Empty caches, found through the environment the way the loader finds them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cache" / "huggingface"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache" / "torch"))
    for name in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    return CacheLocations.from_environment()


@pytest.fixture
def hub(published, caches, monkeypatch):
    with FakeHub(published) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.setenv(ENCODEC_URL_ENV, server.encodec_url)
        yield server


def leftovers(root: Path) -> list[Path]:
    """Partial files and staging folders anywhere under ``root``."""
    return [
        path
        for path in root.rglob("*")
        if path.name.endswith((".incomplete", ".partial")) or path.name.startswith(".download-")
    ]


def unlinked_blobs(locations: CacheLocations) -> set[str]:
    """Blobs of the tokenizer's cache folder that no snapshot links to."""
    repo_dir = locations.hub_repo_dir(TOKENIZER_REPO)
    blobs = {path.name for path in (repo_dir / "blobs").glob("*")} if (repo_dir / "blobs").is_dir() else set()
    linked = {Path(os.path.realpath(link)).name for link in repo_dir.glob("snapshots/*/*")}
    return blobs - linked


def expected_requests(hub: FakeHub, files: list[str]) -> list[tuple[str, str]]:
    """What huggingface_hub and the EnCodec download send for ``files``, in order."""
    requests = []
    for file in files:
        if file in CHECKPOINTS["bark"].values():
            requests += [("HEAD", f"/{BARK_REPO}/resolve/main/{file}"), ("GET", f"/lfs/{sha256(hub.files[file].data)}")]
        elif file in TOKENIZER_FILES:
            requests += [
                ("HEAD", f"/{TOKENIZER_REPO}/resolve/main/{file}"),
                ("HEAD", f"/{RENAMED_TOKENIZER_REPO}/resolve/main/{file}"),
                ("GET", f"/{RENAMED_TOKENIZER_REPO}/resolve/main/{file}"),
            ]
        else:
            requests += [("GET", urlsplit(hub.encodec_url).path)]
    return requests


ALL_FILES = [*CHECKPOINTS["bark"].values(), *TOKENIZER_FILES, ENCODEC]


def test_allow_download_fetches_every_file_where_the_loader_looks(hub, caches, tiny_models, monkeypatch, tmp_path):
    # huggingface_hub asks its default endpoint for a registry the first time it builds request
    # headers in a process (unless telemetry is off): make this the first time, and see that
    # no request goes anywhere but the fake hub.
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setattr(_detect_agent, "_registry", None)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    assert len(missing_files("bark", caches)) == 5
    with NetworkGuard() as guard:
        models, _ = load_cached_models("bark", "cpu", allow_download=True)
    assert guard.attempts == []

    assert missing_files("bark", caches) == []
    assert hub.requests == expected_requests(hub, ALL_FILES)
    assert sorted(path.name for path in caches.bark_dir.iterdir()) == ["coarse_2.pt", "fine_2.pt", "text_2.pt"]
    for file_name in CHECKPOINTS["bark"].values():
        assert (caches.bark_dir / file_name).read_bytes() == hub.files[file_name].data
    repo_dir = caches.hub_repo_dir(TOKENIZER_REPO)
    assert (repo_dir / "refs" / "main").read_text() == REPO_COMMIT
    for file_name in TOKENIZER_FILES:
        link = repo_dir / "snapshots" / REPO_COMMIT / file_name
        assert link.is_symlink() and link.read_bytes() == hub.files[file_name].data
        assert Path(os.path.realpath(link)).name == git_blob_sha1(hub.files[file_name].data)  # blob named by ETag
    assert sorted(os.listdir(caches.encodec_path.parent)) == [ENCODEC_CHECKPOINT]
    assert caches.encodec_path.read_bytes() == hub.files[ENCODEC].data
    assert leftovers(caches.bark_dir.parent.parent) == [] and unlinked_blobs(caches) == set()

    for key in ("coarse", "fine", "codec"):
        original = tiny_models.models[key].state_dict()
        assert all(torch.equal(original[name], value) for name, value in models[key].state_dict().items())
    loaded = ModelSet("bark", get_implementation().name, "cpu", models)
    params = GenerationParams(max_duration_s=0.4)
    ours = generate("Hello.", "en_speaker_0", "scf", 0, params, model_set=loaded)
    reference = generate("Hello.", "en_speaker_0", "scf", 0, params, model_set=tiny_models)
    np.testing.assert_array_equal(ours.fine, reference.fine)

    hub.requests.clear()
    load_cached_models("bark", "cpu", allow_download=True)
    assert hub.requests == []  # everything is cached: nothing is asked of the hub


def test_cli_run_with_allow_download_fetches_only_what_is_missing(hub, caches, published, tmp_path, capsys):
    for file_name in ("text_2.pt", "coarse_2.pt"):
        caches.bark_dir.mkdir(parents=True, exist_ok=True)
        (caches.bark_dir / file_name).write_bytes(published[file_name])
    caches.encodec_path.parent.mkdir(parents=True)
    caches.encodec_path.write_bytes(published[ENCODEC])
    out = tmp_path / "run"
    argv = [
        "run",
        "--model-set",
        "bark",
        "--prompt",
        "en_speaker_0",
        "--text",
        "Hello.",
        "--seeds",
        "0",
        "--cells",
        "scf",
        "--no-study",
        "--max-duration",
        "0.4",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "--allow-download" in capsys.readouterr().err and hub.requests == []

    assert cli.main([*argv, "--allow-download"]) == 0
    assert (out / "summary.json").is_file() and (out / "audio" / "seed0_scf.wav").is_file()
    assert hub.requests == expected_requests(hub, ["fine_2.pt", *TOKENIZER_FILES])
    assert missing_files("bark") == []


def test_without_the_flag_nothing_is_fetched(hub, caches):
    with pytest.raises(MissingWeightsError) as error:
        load_cached_models("bark", "cpu")
    assert len(error.value.missing) == 5
    assert hub.requests == []


@pytest.mark.parametrize(
    "file, problem",
    [
        ("coarse_2.pt", "peer closed connection without sending complete message body"),
        ("vocab.txt", "peer closed connection without sending complete message body"),
        (ENCODEC, "bytes: the connection closed early"),
    ],
)
def test_an_interrupted_download_leaves_nothing_that_loads(hub, caches, file, problem):
    hub.files[file].interrupt = True
    with pytest.raises(DownloadError) as error:
        load_cached_models("bark", "cpu", allow_download=True)
    check_failure(error.value, hub, caches, file, problem)

    # The next run fetches what is missing, and only that.
    hub.files[file].interrupt = hub.files[file].cut = False
    hub.requests.clear()
    written = download_missing("bark", caches)
    assert missing_files("bark", caches) == []
    fetched = ALL_FILES[ALL_FILES.index(file) :]
    again = ["tokenizer_config.json", *fetched] if file == "vocab.txt" else fetched  # proven again, not fetched
    assert [path.name for path in written] == [ENCODEC_CHECKPOINT if f == ENCODEC else f for f in again]
    assert hub.downloads() == [path for method, path in expected_requests(hub, fetched) if method == "GET"]


def damaged_in_transit(data: bytes) -> bytes:
    """One byte changed in the middle (in the tokenizer's vocabulary, a letter of an entry: it
    stays a valid vocabulary, only the ETag tells)."""
    damaged = bytearray(data)
    middle = len(data) // 2
    while not chr(damaged[middle]).isalpha():
        middle += 1
    damaged[middle] ^= 0x01
    return bytes(damaged)


def broken_file(file: str, data: bytes) -> bytes:
    """What a broken mirror might publish: another tokenizer's vocabulary, random bytes."""
    if file == "vocab.txt":
        return "".join(f"[token{i}]\n" for i in range(1000)).encode()
    garbage = np.random.default_rng(7).bytes(len(data))
    assert not garbage.startswith((b"PK", b"\x80"))
    return garbage


@pytest.mark.parametrize(
    "file, how, problem",
    [
        ("coarse_2.pt", "damaged in transit", "SHA-256"),
        ("coarse_2.pt", "published broken", "does not load: not a PyTorch checkpoint"),
        ("vocab.txt", "damaged in transit", "git blob SHA-1"),
        ("vocab.txt", "published broken", "does not load: holds 1,000 entries"),
        (ENCODEC, "damaged in transit", "the hash prefix in the URL"),
        (ENCODEC, "published broken", "does not load: not a PyTorch checkpoint"),
    ],
)
def test_a_corrupted_download_leaves_nothing_that_loads(hub, caches, monkeypatch, tmp_path, file, how, problem):
    published = hub.files[file]
    if how == "damaged in transit":
        published.served = damaged_in_transit(published.data)
        if file == "vocab.txt":  # the damage alone would pass every check of the file itself
            (tmp_path / "vocab.txt").write_bytes(published.served)
            check_tokenizer_vocab(tmp_path / "vocab.txt")
    else:
        published.data = broken_file(file, published.data)
        monkeypatch.setenv(ENCODEC_URL_ENV, hub.encodec_url)  # its name carries the new hash
    with pytest.raises(DownloadError) as error:
        load_cached_models("bark", "cpu", allow_download=True)
    check_failure(error.value, hub, caches, file, problem)


def check_failure(error: DownloadError, hub: FakeHub, caches: CacheLocations, file: str, problem: str) -> None:
    """One line naming the file, its URL and the problem; the file is missing again, nothing
    partial is left anywhere, and the loader reports it missing instead of loading anything."""
    message = str(error)
    url = (
        hub.encodec_url
        if file == ENCODEC
        else (f"{hub.endpoint}/{BARK_REPO if file.endswith('.pt') else TOKENIZER_REPO}/resolve/main/{file}")
    )
    assert "\n" not in message
    assert (ENCODEC_CHECKPOINT if file == ENCODEC else file) in message and url in message, message
    assert problem in message, message
    assert WHAT[file] in [item.what for item in missing_files("bark", caches)]
    assert leftovers(caches.bark_dir.parent.parent) == [] and unlinked_blobs(caches) == set()
    if file.endswith(".pt"):
        assert not (caches.bark_dir / file).exists()
    elif file == ENCODEC:
        assert os.listdir(caches.encodec_path.parent) == []
    else:
        assert not list(caches.hub_repo_dir(TOKENIZER_REPO).glob(f"snapshots/*/{file}"))
    with pytest.raises(MissingWeightsError) as missing:
        load_cached_models("bark", "cpu")
    assert WHAT[file] in [item.what for item in missing.value.missing]
