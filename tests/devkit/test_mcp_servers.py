"""The loopback servers of tests and benchmarks answer without Nagle's delay."""

from __future__ import annotations

import asyncio
import socket

from devkit.mcp_servers import HOST, listening_socket


async def _nodelay_of_a_connection_accepted_by(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection `listener` accepted, once asyncio made it a transport (as
    uvicorn's `serve(sockets=...)` does)."""
    listener.listen()
    with socket.create_connection(listener.getsockname()) as _client:
        accepted, _ = listener.accept()
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
            asyncio.Protocol, accepted
        )
        try:
            served = transport.get_extra_info("socket")
            return int(served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        finally:
            transport.close()


async def test_a_served_connection_has_nagle_off_so_no_answer_waits_for_a_delayed_ack() -> None:
    with listening_socket(0) as listener:
        assert await _nodelay_of_a_connection_accepted_by(listener) == 1


async def test_a_listener_of_the_default_protocol_leaves_nagle_on_which_is_why_it_says_tcp() -> (
    None
):
    # The mistake this guards against: asyncio checks the socket's protocol, and 0 is not TCP.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        assert await _nodelay_of_a_connection_accepted_by(listener) == 0
