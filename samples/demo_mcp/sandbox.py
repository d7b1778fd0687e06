"""File access confined to one directory: no absolute paths, no `..`, no symlink escapes."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

SANDBOX_ENV = "DEMO_MCP_SANDBOX"
DEFAULT_SANDBOX = Path(".local") / "demo-sandbox"
MAX_FILE_BYTES = 1_000_000


class SandboxError(ValueError):
    """The path is outside the sandbox, or the file cannot be used."""


def sandbox_root(configured: str | os.PathLike[str] | None = None) -> Path:
    """The sandbox directory (created if missing), from the argument, the env var or the default."""
    root = Path(configured or os.environ.get(SANDBOX_ENV) or DEFAULT_SANDBOX)
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve(strict=True)


def _relative_parts(path: str) -> tuple[str, ...]:
    if not path or "\x00" in path:
        raise SandboxError("a non-empty relative path is required")
    # Both separators count: a backslash path must not slip past the checks on Windows.
    parts = PurePosixPath(path.replace("\\", "/"))
    if parts.is_absolute() or Path(path).is_absolute() or (len(path) > 1 and path[1] == ":"):
        raise SandboxError("absolute paths are not allowed; use a path relative to the sandbox")
    if any(part == ".." for part in parts.parts):
        raise SandboxError("'..' is not allowed in paths")
    cleaned = tuple(part for part in parts.parts if part not in ("", "."))
    if not cleaned:
        raise SandboxError("the path names the sandbox itself, not a file")
    return cleaned


def resolve_inside(root: Path, path: str) -> Path:
    """The real path of `path` under `root`, refusing anything that resolves outside it."""
    candidate = root.joinpath(*_relative_parts(path))
    # resolve() follows every symlink on the way; the result must still be under the root.
    real = candidate.resolve(strict=False)
    if real != root and root not in real.parents:
        raise SandboxError("the path leads outside the sandbox")
    return real


def read_text(root: Path, path: str) -> str:
    real = resolve_inside(root, path)
    if not real.is_file():
        raise SandboxError(f"no such file in the sandbox: {path}")
    # O_NOFOLLOW: a symlink swapped in after the check above is refused, not followed.
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SandboxError(f"the file is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SandboxError("the file is not UTF-8 text") from None


def write_text(root: Path, path: str, content: str) -> int:
    data = content.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        raise SandboxError(f"content larger than {MAX_FILE_BYTES} bytes")
    real = resolve_inside(root, path)
    real.parent.mkdir(parents=True, exist_ok=True)
    # Re-check after mkdir: a directory created meanwhile must not be a way out.
    resolve_inside(root, path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(real, flags, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return len(data)
