"""free_port never hands the same port out twice in one process, even when the kernel offers it again."""

import socket

from bench.core import processes


class _KernelOffering:
    """A socket whose bind(port 0) gets the next port from a fixed list, as a kernel reusing ports might."""

    offers: list[int] = []

    def __init__(self, *args):
        self.port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def bind(self, address):
        self.port = _KernelOffering.offers.pop(0)

    def getsockname(self):
        return ("127.0.0.1", self.port)


def test_a_port_offered_again_is_skipped(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # one process: every port is its share
    monkeypatch.setattr(processes, "_HANDED_OUT", set())
    monkeypatch.setattr(processes.socket, "socket", _KernelOffering)
    _KernelOffering.offers = [40001, 40001, 40001, 40002, 40001, 40003]
    assert [processes.free_port() for _ in range(3)] == [40001, 40002, 40003]
    assert _KernelOffering.offers == []


def test_a_worker_beside_others_keeps_to_its_share(monkeypatch):
    """Under pytest-xdist, worker gw1 of 2 takes only ports whose half is odd, which worker gw0 never takes."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setattr(processes, "_HANDED_OUT", set())
    monkeypatch.setattr(processes.socket, "socket", _KernelOffering)
    _KernelOffering.offers = [40000, 40001, 40002, 40004, 40003, 40005, 40006]
    assert [processes.free_port() for _ in range(2)] == [40002, 40003]
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert processes.free_port() == 40005
    assert _KernelOffering.offers == [40006]


def test_the_ports_are_really_free():
    ports = [processes.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
