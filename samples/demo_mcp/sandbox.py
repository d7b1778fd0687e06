"""File access confined to one directory: no absolute paths, no `..`, no symlink escapes, and
only plain files: a symlink, a fifo, a device or socket, or a file with a second hard link (which
may be a file outside the sandbox linked in) is refused for reading and writing."""

from __future__ import annotations

import os
import stat
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


def _final_path(root: Path, path: str) -> Path:
    """The file's path with every directory resolved but the last component left as named, so
    a symlink there is seen (and refused) rather than followed."""
    resolve_inside(root, path)  # the whole path, symlinks followed, stays inside
    parts = _relative_parts(path)
    parent = resolve_inside(root, "/".join(parts[:-1])) if len(parts) > 1 else root
    final = parent / parts[-1]
    if final.is_symlink():
        raise SandboxError(f"{path} is a symlink; only plain files can be used")
    return final


def _open_plain(final: Path, path: str, flags: int) -> int:
    """Open `final` without following a symlink and without blocking on a fifo, then check
    what was opened (fstat on the descriptor: a file swapped in after a check is still caught)."""
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(final, flags, 0o644)
    except FileNotFoundError:
        raise SandboxError(f"no such file in the sandbox: {path}") from None
    except OSError as exc:  # ELOOP (a symlink), ENXIO (a fifo or socket with no peer), ...
        raise SandboxError(
            f"{path} is not a plain file that can be used ({exc.strerror})"
        ) from None
    try:
        _check_plain(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    os.set_blocking(fd, True)
    return fd


def _check_plain(info: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise SandboxError(f"{path} is not a plain file (a fifo, device, socket or directory)")
    if info.st_nlink > 1:
        # Another name for the same file may live outside the sandbox: reading or writing it
        # here would reach that file.
        raise SandboxError(f"{path} has more than one hard link; it is refused")


def read_text(root: Path, path: str) -> str:
    final = _final_path(root, path)
    with os.fdopen(_open_plain(final, path, os.O_RDONLY), "rb") as handle:
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
    resolve_inside(root, path)
    parts = _relative_parts(path)
    root.joinpath(*parts[:-1]).mkdir(parents=True, exist_ok=True)
    # Re-check after mkdir: a directory created meanwhile must not be a way out.
    final = _final_path(root, path)
    # No O_TRUNC at open: the file is truncated only once it is known to be a plain file with
    # one link, so a hard link to an outside file is refused before anything is lost.
    with os.fdopen(_open_plain(final, path, os.O_WRONLY | os.O_CREAT), "wb") as handle:
        handle.truncate(0)
        handle.write(data)
    return len(data)
