"""File hashing and crash-safe writes (hashlib and os only): what the engine cache, engine builds,
calibration caches and quantized models record about the files they came from."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_bytes(data) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def digest_path(path, full_limit: int = 64 << 20) -> str:
    """Content digest of a file or folder (calibration inputs). Files up to full_limit bytes are
    hashed whole; larger ones (videos, bags) by size, head and tail, which tells recordings apart
    without reading gigabytes on every build."""
    root = Path(path)
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        rel = p.name if p == root else p.relative_to(root).as_posix()
        size = p.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size <= full_limit:
            h.update(sha256_file(p).encode())
        else:
            with open(p, "rb") as f:
                h.update(f.read(1 << 20))
                f.seek(max(0, size - (1 << 20)))
                h.update(f.read(1 << 20))
    return h.hexdigest()


def atomic_write(path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written engine/cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = ["sha256_bytes", "sha256_file", "digest_path", "atomic_write"]
