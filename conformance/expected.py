"""`expected-failures.txt`: the failures we know of, each with its reason.

One per line: `<run> <scenario check or *> <reason>`, e.g.

    demo@2026-07-28/server-stateless sep-2575-missing-capability-http-400 the fixture tool ...

`<run>` is `target@revision/scenario` as the runner prints it; `*` excuses the whole run (it
produced no results), a check id only that check. `#` starts a comment line. A line without a
reason is refused: an excuse nobody can read is a failure nobody will fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WHOLE_RUN = "*"


class ExpectedFailuresError(ValueError):
    """The file is malformed; the message names the line."""


@dataclass(frozen=True)
class Expected:
    run: str
    check: str | None  # None: the whole run
    reason: str

    @property
    def key(self) -> str:
        return f"{self.run} {self.check or WHOLE_RUN}"


def parse_expected(text: str, source: str = "expected-failures.txt") -> list[Expected]:
    entries: list[Expected] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(maxsplit=2)
        if len(parts) < 3 or "/" not in parts[0] or "@" not in parts[0]:
            raise ExpectedFailuresError(
                f"{source}:{number}: expected '<target@revision/scenario> <check id or *> "
                f"<reason>', got {stripped!r}"
            )
        run, check, reason = parts
        entry = Expected(run, None if check == WHOLE_RUN else check, reason)
        if entry.key in seen:
            raise ExpectedFailuresError(f"{source}:{number}: {entry.key} is listed twice")
        seen.add(entry.key)
        entries.append(entry)
    return entries


def load_expected(path: Path) -> list[Expected]:
    return parse_expected(path.read_text(encoding="utf-8"), path.name)
