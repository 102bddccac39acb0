"""Fetching real Bark weights into the local caches: only on request (``allow_download=True``,
``--allow-download``), through :func:`bark_ablation.models.cached_weights._download`.

Where each file comes from, and where it goes (exactly where :mod:`bark_ablation.models.cached_weights`
looks):

* Bark's checkpoints (``text_2.pt`` ... or the small ``text.pt`` ...): ``suno/bark`` on the
  Hugging Face Hub, with ``huggingface_hub.hf_hub_download`` as Bark 0.1.5's own ``_download``
  does, into ``$XDG_CACHE_HOME/suno/bark_v0``;
* the tokenizer ``bert-base-multilingual-cased`` (``tokenizer_config.json``, then ``vocab.txt``,
  which is what the loader looks for, so a vocabulary is never cached without its config) into
  the Hugging Face cache's own layout (``models--bert-base-multilingual-cased/blobs``,
  ``snapshots/<commit>``, ``refs/main``);
* EnCodec 24 kHz weights from :data:`DEFAULT_ENCODEC_URL` (Meta's, the URL the ``encodec``
  package uses) or the URL in ``$BARK_ABLATION_ENCODEC_URL``, into
  ``$TORCH_HOME/hub/checkpoints/encodec_24khz-d7cc33bc.th``.

The Hub is ``$HF_ENDPOINT`` read at call time (a mirror, or a local test server), else
huggingface_hub's default. No request goes anywhere else than that endpoint, the hosts it
redirects to, and the EnCodec URL.

A file is proven before it is left where the loader looks: its bytes against what the server
published (a Hub file's SHA-256 for LFS files or git blob SHA-1 for regular ones, both the
ETag huggingface_hub names the blob after; the SHA-256 prefix torch hub puts in an EnCodec file
name; the byte count against ``Content-Length``), then loaded with the project's own loaders.
Checkpoints are fetched into a hidden staging folder beside their destination and moved into
place only after that, EnCodec into a ``.partial`` file likewise; a tokenizer file that fails is
deleted from the Hugging Face cache (its snapshot link and its blob). So an interrupted,
truncated or corrupted download raises :class:`DownloadError` (one line: the file, the URL,
what went wrong) and leaves nothing that a later run would load. Proving a file costs one
extra load of it on the CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from bark_ablation.core.errors import BarkAblationError, CacheFileError, ModelSetError
from bark_ablation.core.hub_access import hub_online
from bark_ablation.models.cached_weights import (
    BARK_REPO,
    CHECKPOINTS,
    ENCODEC_CHECKPOINT,
    TOKENIZER_REPO,
    CacheLocations,
    _tokenizer_vocab,
    load_bark_checkpoint,
    load_cached_encodec,
    load_cached_tokenizer,
)

ENCODEC_URL_ENV = "BARK_ABLATION_ENCODEC_URL"
"""Environment variable overriding where EnCodec's weights are fetched from (read at call time)."""
DEFAULT_ENCODEC_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + ENCODEC_CHECKPOINT
"""Meta's URL, as ``encodec.model.ROOT_URL`` + the 24 kHz checkpoint name."""
TOKENIZER_FILES = ("tokenizer_config.json", "vocab.txt")
"""Fetched in this order: ``vocab.txt`` is what the loader looks for, so it comes last."""

_HASH_PREFIX = re.compile(r"-([0-9a-f]{8,64})\.[^/.]+$")
"""torch hub's file names carry a prefix of the file's SHA-256: ``name-<hex>.ext``."""
_READ_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class DownloadError(ModelSetError):
    """A weights file could not be fetched, or what arrived is not the file (truncated,
    damaged, not loadable). One line: what, from where, what went wrong, and that nothing was
    left where the loader looks."""

    def __init__(self, what: str, url: str, problem: str, destination: Path):
        self.what = what
        self.url = url
        self.problem = problem
        self.destination = Path(destination)
        message = (
            f"download of {what} from {url} failed: {problem}; nothing was left at "
            f"{self.destination} (run again to retry)"
        )
        super().__init__(" ".join(message.split()))


class _Refused(Exception):
    """What arrived is not the published file (internal: becomes a DownloadError)."""


def hub_endpoint() -> str:
    """``$HF_ENDPOINT`` now, else huggingface_hub's default endpoint (no trailing slash)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def encodec_url() -> str:
    """``$BARK_ABLATION_ENCODEC_URL`` now, else :data:`DEFAULT_ENCODEC_URL`."""
    return os.environ.get(ENCODEC_URL_ENV) or DEFAULT_ENCODEC_URL


def download_missing(name: str, locations: CacheLocations) -> list[Path]:
    """Fetch every file of model set ``name`` (``bark`` or ``bark-small``) that is not in the
    caches, checkpoints first, then the tokenizer, then EnCodec; stop at the first failure
    (files fetched before it stay: each was proven). Returns the paths written."""
    endpoint = hub_endpoint()
    written = []
    with hub_online(), _only_the_files():  # the user allowed this download
        for stage, file_name in CHECKPOINTS[name].items():
            if not (locations.bark_dir / file_name).is_file():
                written.append(download_bark_checkpoint(stage, file_name, locations, endpoint, model_set=name))
        if _tokenizer_vocab(locations) is None:
            written.extend(download_tokenizer(locations, endpoint, model_set=name))
        if not locations.encodec_path.is_file():
            written.append(download_encodec(locations, encodec_url(), model_set=name))
    return written


@contextlib.contextmanager
def _only_the_files() -> Iterator[None]:
    """huggingface_hub's telemetry off while we download. Since 2.x it fetches a registry of
    "agent harnesses" from ``{endpoint at import}/api/agent-harnesses`` the first time it builds
    request headers, unless telemetry is off: a request that is not for a file, to
    huggingface.co when ``HF_ENDPOINT`` named a mirror only after it was imported. Its setting
    is read from the environment once, at import, so it is set on the module for the duration."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DISABLE_TELEMETRY
    constants.HF_HUB_DISABLE_TELEMETRY = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_TELEMETRY = saved


def download_bark_checkpoint(
    stage: str, file_name: str, locations: CacheLocations, endpoint: str, *, model_set: str = "bark"
) -> Path:
    """Fetch one of Bark's checkpoints from ``suno/bark`` into ``locations.bark_dir``."""
    from bark.model import GPT, GPTConfig
    from bark.model_fine import FineGPT, FineGPTConfig
    from huggingface_hub import hf_hub_download, hf_hub_url

    destination = locations.bark_dir / file_name
    url = hf_hub_url(BARK_REPO, file_name, endpoint=endpoint)
    classes = (FineGPT, FineGPTConfig) if stage == "fine" else (GPT, GPTConfig)
    locations.bark_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=locations.bark_dir))
    try:
        with _named_failures(f"Bark {stage} checkpoint {file_name}", url, destination):
            pointer = hf_hub_download(repo_id=BARK_REPO, filename=file_name, cache_dir=staging, endpoint=endpoint)
            blob = Path(os.path.realpath(pointer))
            _check_etag(blob, etag=blob.name)
            load_bark_checkpoint(blob, *classes, "cpu", stage=stage, model_set=model_set)
            os.replace(blob, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def download_tokenizer(locations: CacheLocations, endpoint: str, *, model_set: str = "bark") -> list[Path]:
    """Fetch :data:`TOKENIZER_FILES` of ``bert-base-multilingual-cased`` into the Hugging Face
    cache. Returns the snapshot paths (links to blobs)."""
    from huggingface_hub import hf_hub_download, hf_hub_url

    repo_dir = locations.hub_repo_dir(TOKENIZER_REPO)
    written = []
    for file_name in TOKENIZER_FILES:
        url = hf_hub_url(TOKENIZER_REPO, file_name, endpoint=endpoint)
        try:
            with _named_failures(f"tokenizer {TOKENIZER_REPO} file {file_name}", url, repo_dir):
                pointer = Path(
                    hf_hub_download(
                        repo_id=TOKENIZER_REPO, filename=file_name, cache_dir=locations.hf_hub_dir, endpoint=endpoint
                    )
                )
                blob = Path(os.path.realpath(pointer))
                _check_etag(blob, etag=blob.name)
                if file_name == "vocab.txt":
                    load_cached_tokenizer(pointer, model_set=model_set, repo_dir=repo_dir)
                else:
                    _check_json(blob)
        except BaseException:
            # A file that was not proven is not kept, whether this call fetched it or found it.
            after = _cached_tokenizer_file(locations, file_name)
            if after is not None:
                _remove_from_hf_cache(after)
            raise
        written.append(pointer)
    return written


def download_encodec(locations: CacheLocations, url: str, *, model_set: str = "bark") -> Path:
    """Fetch EnCodec 24 kHz weights from ``url`` into ``locations.encodec_path``: streamed
    into a ``.partial`` file beside it, checked (byte count, the URL's hash prefix), loaded,
    then renamed into place."""
    destination = locations.encodec_path
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with _named_failures(f"EnCodec 24 kHz weights {ENCODEC_CHECKPOINT}", url, destination):
            with open(partial, "xb") as out:  # the mode an ordinary write gives
                digest = _fetch(url, out)
            prefix = _url_hash_prefix(url)
            if prefix and not digest.startswith(prefix):
                raise _Refused(
                    f"its SHA-256 {digest[:16]}... does not start with {prefix}, the hash "
                    f"prefix in the URL's file name: the bytes were damaged or are another file"
                )
            load_cached_encodec(partial, "cpu", model_set=model_set)
            os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _fetch(url: str, out) -> str:
    """Stream ``url`` into ``out``; the SHA-256 of what arrived. Refuses a body shorter or
    longer than its ``Content-Length`` (a connection closed early ends the read silently)."""
    request = urllib.request.Request(url, headers={"User-Agent": "bark-ablation", "Accept-Encoding": "identity"})
    sha = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(request, timeout=_READ_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            sha.update(chunk)
            size += len(chunk)
    if length is not None and length.strip().isdigit() and size != int(length):
        raise _Refused(f"received {size:,} of {int(length):,} bytes: the connection closed early")
    return sha.hexdigest()


def _url_hash_prefix(url: str) -> str | None:
    match = _HASH_PREFIX.search(urllib.parse.urlsplit(url).path)
    return match.group(1) if match else None


def _check_etag(path: Path, etag: str) -> None:
    """Compare a Hub file with the ETag it was published under, when the ETag is a content
    hash: SHA-256 (64 hex digits, LFS files) or git's blob SHA-1 (40, regular files)."""
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        kind, digest = "SHA-256", _file_digest(path, hashlib.sha256())
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        sha1 = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
        kind, digest = "git blob SHA-1", _file_digest(path, sha1)
    else:
        return
    if digest != etag:
        raise _Refused(
            f"its {kind} is {digest[:16]}... where the Hub published {etag[:16]}... (its "
            f"ETag): the bytes were damaged in transit"
        )


def _file_digest(path: Path, digest) -> str:
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_json(path: Path) -> None:
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Refused(f"not a JSON file ({error})") from None


def _cached_tokenizer_file(locations: CacheLocations, file_name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(TOKENIZER_REPO, file_name, cache_dir=locations.hf_hub_dir)
    return Path(found) if isinstance(found, str) else None


def _remove_from_hf_cache(pointer: Path) -> None:
    """Delete a snapshot entry and the blob it links to."""
    blob = Path(os.path.realpath(pointer))
    pointer.unlink(missing_ok=True)
    if blob != pointer:
        blob.unlink(missing_ok=True)


@contextlib.contextmanager
def _named_failures(what: str, url: str, destination: Path) -> Iterator[None]:
    """Turn whatever goes wrong while fetching or proving a file into a :class:`DownloadError`.
    The network guard's error (tests) and interrupts pass through unchanged."""
    from bark_ablation.testing.network_guard import NetworkBlockedError

    try:
        yield
    except (NetworkBlockedError, KeyboardInterrupt):
        raise
    except _Refused as error:
        raise DownloadError(what, url, str(error), destination) from None
    except CacheFileError as error:
        raise DownloadError(what, url, f"what arrived does not load: {error.problem}", destination) from None
    except urllib.error.HTTPError as error:
        raise DownloadError(what, url, f"HTTP {error.code} {error.reason}", destination) from None
    except urllib.error.URLError as error:
        raise DownloadError(what, url, f"cannot reach it: {error.reason}", destination) from None
    except BarkAblationError:
        raise
    except Exception as error:  # noqa: BLE001 - the Hub client's errors: named, one line
        raise DownloadError(what, url, _describe(error), destination) from error


def _describe(error: BaseException) -> str:
    """``Type: first line`` of an error, then of the errors it happened after (a retry that
    failed after a dropped connection names both), each message once."""
    parts, messages = [], set()
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(parts) < 3:
        seen.add(id(current))
        text = str(current).strip()
        first = text.splitlines()[0].strip() if text else ""
        if first not in messages:
            messages.add(first)
            parts.append(f"{type(current).__name__}: {first}" if first else type(current).__name__)
        current = current.__cause__ or current.__context__
    return "; before that, ".join(parts)
