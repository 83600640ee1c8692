"""Provides TinyDNS: a real UDP DNS server on loopback, for testing the resolver path end to end.

It answers from master-file text, gives SERVFAIL for names under `servfail.`, and never answers names
under `blackhole.` (a timeout), so temperror paths are tested against real sockets.
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
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.questions: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text().lower()
            self.questions.append((name, dns.rdatatype.to_text(question.rdtype)))
            if name.endswith("blackhole."):
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if name.endswith("servfail."):
                response.set_rcode(dns.rcode.SERVFAIL)
            else:
                owners = [r for r in self.rrsets if r.name == question.name]
                if not owners:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.answer.extend(r for r in owners if r.rdtype == question.rdtype)
            self.sock.sendto(response.to_wire(), peer)
