"""The deployment package as a zip deploy builds it: the project folder minus what `.funcignore`
lists (gitignore syntax, as Core Tools and azd read it).

    package = build_package(ROOT, tmp_path / "app.zip")   # the zip, and the names in it

The matcher covers the gitignore rules .funcignore uses: comments, `!` negation, a trailing `/`
for folders, a `/` inside a pattern anchoring it to the root, `*`, `?` and `**`, and a file
under an ignored folder staying ignored.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    pattern: str
    negated: bool
    folders_only: bool
    anchored: bool

    def matches(self, path: str, is_folder: bool) -> bool:
        if self.folders_only and not is_folder:
            return False
        if self.anchored:
            return _glob(self.pattern, path)
        return _glob(self.pattern, path.rsplit("/", 1)[-1])


def _glob(pattern: str, text: str) -> bool:
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] in "*?":
            regex, i = regex + ("[^/]*" if pattern[i] == "*" else "[^/]"), i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.fullmatch(regex, text) is not None


def read_rules(ignore_file: Path) -> list[Rule]:
    rules = []
    for raw in ignore_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!")
        folders_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        rules.append(Rule(line.lstrip("/"), negated, folders_only, anchored))
    return rules


def ignored(rules: list[Rule], path: str, is_folder: bool) -> bool:
    """The last matching rule decides (gitignore semantics)."""
    verdict = False
    for rule in rules:
        if rule.matches(path, is_folder):
            verdict = not rule.negated
    return verdict


def package_files(root: Path, rules: list[Rule]) -> list[str]:
    """Relative paths of the files a zip deploy uploads, sorted."""
    kept: list[str] = []
    for folder, folders, files in os.walk(root, followlinks=False):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # An ignored folder is not entered: nothing under it can come back.
        folders[:] = [name for name in folders if not ignored(rules, prefix + name, True)]
        for name in files:
            path = prefix + name
            if not os.path.islink(root / path) and not ignored(rules, path, False):
                kept.append(path)
    # Symlinked folders (.venv, node_modules here) are neither walked nor uploaded.
    return sorted(kept)


def build_package(root: Path, destination: Path) -> list[str]:
    names = package_files(root, read_rules(root / ".funcignore"))
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(root / name, name)
    return names
