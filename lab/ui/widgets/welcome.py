"""Provides Welcome: what an empty lab shows, namely how to send it the first message."""

from __future__ import annotations

from textual.widgets import Markdown


def welcome_markdown(ports: dict[str, int], host: str) -> str:
    relay, sub, smtps = (ports.get(k, "?") for k in ("relay", "submission", "smtps"))
    return f"""\
# No mail yet

Point your application at one of the listeners, or paste one of these. Press **ctrl+p** and choose
**Send sample messages** to see every pane at work at once.

**relay** (port 25 role, no AUTH):
```
swaks --server {host}:{relay} --from app@example.com --to user@example.net
```
**submission** (port 587 role: STARTTLS, then AUTH; any password is accepted):
```
swaks --server {host}:{sub} --tls --auth PLAIN --auth-user app --auth-password x \\
      --from app@example.com --to user@example.net
```
**smtps** (port 465 role: implicit TLS, then AUTH):
```
swaks --server {host}:{smtps} --tls-on-connect --auth PLAIN --auth-user app --auth-password x \\
      --from app@example.com --to user@example.net
```
From Python:
```python
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("{host}", {sub}) as s:
    s.starttls(context=ctx); s.login("app", "x")
    s.sendmail("app@example.com", ["user@example.net"], b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
```
Say which IP your mail would come from in production with `--client-ip IP` (or swaks
`--xclient-addr IP`), so SPF means something. Press **?** for keys.
"""


class Welcome(Markdown):
    def __init__(self, ports: dict[str, int], host: str, **kwargs):
        super().__init__(welcome_markdown(ports, host), **kwargs)
