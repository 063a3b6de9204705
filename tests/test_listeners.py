"""bridge/listeners.py: the per-worker SO_REUSEPORT sockets of `serve --workers N` (binding, errors, the
kernel spreading connections over them). The supervised processes are tested as an operator runs them, in
tests/ops/test_workers.py."""

from __future__ import annotations

import socket

import pytest

from bridge.errors import ConfigurationError
from bridge.listeners import balanced_listeners_supported, bind_listeners

pytestmark = pytest.mark.skipif(
    not balanced_listeners_supported(), reason="SO_REUSEPORT spreads connections on Linux only"
)


def test_the_sockets_share_one_port_and_say_they_are_tcp() -> None:
    sockets = bind_listeners("127.0.0.1", 0, 3)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1  # port 0: the first socket's ephemeral port for all three
        assert 0 not in ports
        for sock in sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY on accepted sockets only then
            assert sock.get_inheritable()
    finally:
        for sock in sockets:
            sock.close()


def test_the_kernel_spreads_connections_over_the_listening_sockets() -> None:
    sockets = bind_listeners("127.0.0.1", 0, 2)
    port = sockets[0].getsockname()[1]
    clients: list[socket.socket] = []
    try:
        for sock in sockets:
            sock.listen(64)
            sock.setblocking(False)
        for _ in range(32):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        accepted = []
        for sock in sockets:
            count = 0
            while True:
                try:
                    connection, _ = sock.accept()
                except BlockingIOError:
                    break
                connection.close()
                count += 1
            accepted.append(count)
    finally:
        for each in (*clients, *sockets):
            each.close()
    assert sum(accepted) == 32
    # Hashed per connection: each socket gets about half; at most 5 of 32 on one side has odds ~1e-4.
    assert min(accepted) >= 6, accepted


def test_a_port_another_program_listens_on_is_refused_with_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{port}: .*in use"):
            bind_listeners("127.0.0.1", port, 2)


def test_an_address_not_of_this_machine_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"cannot listen on 192\.0\.2\.1:"):
        bind_listeners("192.0.2.1", 0, 2)  # TEST-NET-1: never a local address
