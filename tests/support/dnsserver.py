"""Provides TinyDNS: a real UDP DNS server on loopback, for testing the resolver path end to end.

It answers from master-file text over UDP and TCP, gives SERVFAIL for names under `servfail.`, never
answers names under `blackhole.` (a timeout) unless `blackhole` is switched off, and sets TC (truncated)
on UDP answers for names under `big.`, so clients must retry over TCP.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import dns.zonefile


class TinyDNS:
    def __init__(self, zone_text: str):
        """`zone_text` uses absolute owner names (no $ORIGIN)."""
        self.rrsets = dns.zonefile.read_rrsets(zone_text, default_ttl=60)
        for _ in range(20):  # UDP and TCP on one port number: the TCP one may be taken (a client's port)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.sock.close()
                self.tcp.close()
        self.questions: list[tuple[str, str, str]] = []
        self.blackhole = True
        self.tcp.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()
        self.tcp.close()

    def _answer(self, data: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        self.questions.append((name, dns.rdatatype.to_text(question.rdtype), transport))
        if name.endswith("blackhole.") and self.blackhole:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name.endswith("servfail."):
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name.endswith("big.") and transport == "udp":
            response.flags |= dns.flags.TC  # "too large for UDP": the answer section is left empty
        else:
            owners = [r for r in self.rrsets if r.name == question.name]
            if not owners:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.answer.extend(r for r in owners if r.rdtype == question.rdtype or r.rdtype == 5)
        return response.to_wire()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            wire = self._answer(data, "udp")
            if wire is not None:
                self.sock.sendto(wire, peer)

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        chunk = conn.recv(size - len(data))
                        if not chunk:
                            break
                        data += chunk
                    wire = self._answer(data, "tcp")
                    if wire is not None:
                        conn.sendall(len(wire).to_bytes(2, "big") + wire)
                except OSError:
                    pass
