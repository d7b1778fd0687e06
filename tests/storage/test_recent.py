"""The bounded map behind the stores' per-process copies."""

from __future__ import annotations

import pytest

from storage.recent import Recent


def test_the_least_recently_stored_or_read_entry_is_forgotten_first():
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now the more recent
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)


def test_pop_forgets_an_entry_and_a_missing_one_is_no_error():
    recent: Recent[str, int] = Recent(2)
    assert recent.put("a", 1) == 1
    recent.pop("a")
    recent.pop("never-there")
    assert recent.get("a") is None


def test_a_map_that_holds_nothing_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        Recent(0)
