"""Continuation tokens: opaque, bound to the caller they were given to, refused when edited."""

from __future__ import annotations

import pytest

from agent.errors import BadRequest
from agent.http import paging

POSITION = "2!96!MDAwMDM4IW93bmVycy9hYmMvYWN0aXZpdHkvMTIzLWMxITAwMDAyOCE5OTk5LTEyLTMxVDIzOjU5OjU5"


def test_a_token_gives_back_the_position_it_was_made_from() -> None:
    token = paging.encode("alice", POSITION)
    assert paging.decode("alice", token) == POSITION
    assert POSITION not in token  # opaque: the store's marker is not shown as it is


def test_another_callers_token_is_refused() -> None:
    token = paging.encode("alice", POSITION)
    with pytest.raises(BadRequest, match="another caller's"):
        paging.decode("bob", token)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the checksum
        lambda t: ("A" if t[0] != "A" else "B") + t[1:],  # the payload
        lambda t: t[: len(t) // 2],  # cut short
        lambda t: t.replace(".", ""),
        lambda t: t + "=",
        lambda t: "x" * 600,
        lambda t: "",
    ],
)
def test_an_edited_or_malformed_token_is_refused(edit) -> None:
    with pytest.raises(BadRequest, match="list again without it"):
        paging.decode("alice", edit(paging.encode("alice", POSITION)))


def test_a_well_checksummed_token_without_a_position_is_refused() -> None:
    """Someone who knows the scheme can checksum any payload: its content is still checked."""
    for payload in (b"[]", b'{"v":1}', b'{"v":2,"m":"x"}', b'{"v":1,"m":""}', b"not json"):
        body = paging._b64(payload)
        token = f"{body}.{paging._checksum('alice', body)}"
        with pytest.raises(BadRequest):
            paging.decode("alice", token)
