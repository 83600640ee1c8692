"""Provides helpers for driving the Textual lab in tests: a configured app, SMTP into it, waiting, reading panes."""

from __future__ import annotations

import asyncio
import io
import smtplib

from rich.console import Console

from lab.config import Config
from lab.ui.app import MaillabApp
from support import GOOD_IP, ZONES
from support.client import send


def make_app(tmp_path, **settings) -> MaillabApp:
    config = Config(data_dir=tmp_path / "data", zones=[str(z) for z in ZONES], offline=True,
                    relay_port=0, submission_port=0, smtps_port=0, pop3_port=0, spam_filters="off",
                    analysis="thread")  # fast to start; the process mode is tested through `serve`
    config.update(settings, "test")
    return MaillabApp(config)


async def smtp_send(app: MaillabApp, raw: bytes, ip: str = GOOD_IP, **kwargs) -> int:
    def go() -> int:
        with smtplib.SMTP("127.0.0.1", app.engine.ports["relay"], local_hostname="mail.example.com") as s:
            s.ehlo()
            s.docmd("XCLIENT", f"ADDR={ip}")
            s.ehlo("mail.example.com")
            return send(s, raw, **kwargs)
    return await asyncio.to_thread(go)


async def until(pilot, condition, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


def plain(renderable) -> str:
    """What a renderable shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def verdict_text(app: MaillabApp) -> str:
    return "\n".join(plain(w.content) for w in app.query("VerdictView Static"))


