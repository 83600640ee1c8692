"""Provides the built-in sample set: eight messages that show every verdict pane at work, and their DNS.

Two of them are newsletters judged by Gmail's bulk-sender rules (an `X-Maillab-Profile: gmail-bulk`
header picks the profile): one meets every rule, one breaks several, each failure with its reply code.

The samples use `maillab.test` (RFC 6761 reserves .test, so nothing real is shadowed). Their DKIM key is
made on first use in the data directory and published by a zone the engine always layers in.
"""

from __future__ import annotations

import base64
import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lab.core.dnsview import ZoneView

DOMAIN = "shop.maillab.test"
SOFT = "soft.maillab.test"
SELECTOR = "lab"
GOOD_IP = "192.0.2.25"  # its own address: PTR mail.shop.maillab.test, so the sample zone shadows no test record
SPOOF_IP = "203.0.113.66"
SOFT_IP = "198.51.100.20"


def key_path(data_dir: Path) -> Path:
    return data_dir / "samples" / f"{SELECTOR}._domainkey.{DOMAIN}.ed25519"


def ensure_key(data_dir: Path) -> bytes:
    """The samples' ed25519 signing key (base64 of the 32-byte seed), made once per data directory.

    ed25519 (RFC 8463) because making it costs microseconds; an RSA key would cost every new lab a second.
    """
    path = key_path(data_dir)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(seed))
    return path.read_bytes().strip()


def zone(data_dir: Path) -> ZoneView:
    """The DNS the samples need: SPF, DMARC and the DKIM public key."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(ensure_key(data_dir)))
    p = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw)).decode()
    return ZoneView.from_text(f"""
$ORIGIN maillab.test.
shop                TXT "v=spf1 ip4:{GOOD_IP} -all"
shop                MX  10 mail.shop
mail.shop           A   {GOOD_IP}
mail.shop           TXT "v=spf1 a -all"
_dmarc.shop         TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{DOMAIN}"
{SELECTOR}._domainkey.shop TXT "v=DKIM1; k=ed25519; p={p}"
25.2.0.192.in-addr.arpa. PTR mail.shop.maillab.test.
soft                TXT "v=spf1 ip4:{GOOD_IP} ~all"
_dmarc.soft         TXT "v=DMARC1; p=none"
""", label="samples")


@dataclass(frozen=True)
class Sample:
    title: str
    listener: str
    mail_from: str
    from_header: str
    subject: str
    client_ip: str
    sign: bool = True
    alter_body: bool = False
    newsletter: bool = False  # judged as a Gmail bulk sender's mail
    unsubscribe: bool = False  # List-Unsubscribe (RFC 8058 one-click, signed) and a link in the body


SAMPLES = (
    Sample("passes everything", "submission", f"orders@{DOMAIN}", f"Shop <orders@{DOMAIN}>",
           "Your order #1001 has shipped", GOOD_IP),
    Sample("port 25 without AUTH", "relay", f"orders@{DOMAIN}", f"Shop <orders@{DOMAIN}>",
           "Sent to port 25 without AUTH", GOOD_IP),
    Sample("broken DKIM body", "submission", f"orders@{DOMAIN}", f"Shop <orders@{DOMAIN}>",
           "A footer was added after signing", GOOD_IP, alter_body=True),
    Sample("spoofs a DMARC p=reject domain", "relay", f"ceo@{DOMAIN}", f"CEO <ceo@{DOMAIN}>",
           "Urgent wire transfer", SPOOF_IP, sign=False),
    Sample("from a role address", "submission", f"postmaster@{DOMAIN}", f"Postmaster <postmaster@{DOMAIN}>",
           "Weekly newsletter", GOOD_IP),
    Sample("SPF softfail", "submission", f"hello@{SOFT}", f"Soft News <hello@{SOFT}>",
           "Sent from an IP the SPF record does not list", SOFT_IP, sign=False),
    Sample("newsletter that meets Gmail's bulk rules", "submission", f"news@{DOMAIN}", f"Shop News <news@{DOMAIN}>",
           "November deals: 20% off boots", GOOD_IP, newsletter=True, unsubscribe=True),
    Sample("newsletter that breaks Gmail's bulk rules", "relay", f"news@{SOFT}", f"Soft News <news@{SOFT}>",
           "November deals from Soft News", SOFT_IP, sign=False, newsletter=True),
)


def build(sample: Sample, data_dir: Path) -> bytes:
    body = (f"Hello,\r\n\r\nThis is the maillab sample \"{sample.title}\".\r\n"
            "See the Verdict tab for what a receiver would do with it.\r\n")
    domain = sample.mail_from.rpartition("@")[2]
    extra = ""
    signed = [b"from", b"to", b"subject", b"date", b"message-id"]
    if sample.newsletter:
        extra += "X-Maillab-Profile: gmail-bulk\r\n"
        body += "\r\nThis month: boots, scarves and a free tote with orders over 50 euros.\r\n"
    if sample.unsubscribe:
        link = f"https://{domain}/unsubscribe?u=customer%40example.net"
        extra += f"List-Unsubscribe: <{link}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        body += f"\r\nNo longer interested? Unsubscribe: {link}\r\n"
        signed += [b"list-unsubscribe", b"list-unsubscribe-post"]
    raw = (f"From: {sample.from_header}\r\nTo: Customer <customer@example.net>\r\nSubject: {sample.subject}\r\n"
           f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: {make_msgid(domain=domain)}\r\n{extra}"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()
    if sample.sign:
        raw = dkim.sign(raw, SELECTOR.encode(), DOMAIN.encode(), ensure_key(data_dir),
                        signature_algorithm=b"ed25519-sha256", include_headers=signed) + raw
    if sample.alter_body:
        raw += b"--\r\nThis footer was added by a relay after signing.\r\n"
    return raw


def send_all(ports: dict[str, int], data_dir: Path, host: str = "127.0.0.1",
             progress: Callable[[str], None] | None = None) -> list[str]:
    """Send every sample to the lab's own listeners; returns one line per sample."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    results = []
    for sample in SAMPLES:
        try:
            port = ports[sample.listener]
            with smtplib.SMTP(host, port, local_hostname=f"mail.{DOMAIN}", timeout=10) as smtp:
                smtp.ehlo()
                if sample.listener == "submission":  # 530 for anything but EHLO and STARTTLS before TLS
                    smtp.starttls(context=tls)
                    smtp.ehlo()
                code, reply = smtp.docmd("XCLIENT", f"ADDR={sample.client_ip} HELO=mail.{DOMAIN}")
                if code != 220:
                    raise smtplib.SMTPResponseException(code, reply)
                smtp.ehlo(f"mail.{DOMAIN}")
                if sample.listener == "submission":
                    smtp.login("sample-app", "sample-password")
                smtp.sendmail(sample.mail_from, ["customer@example.net"], build(sample, data_dir))
            line = f"sent: {sample.title}"
        except (OSError, smtplib.SMTPException, KeyError) as exc:
            line = f"failed: {sample.title}: {exc}"
        results.append(line)
        if progress:
            progress(line)
    return results
