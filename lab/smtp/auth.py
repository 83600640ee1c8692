"""Provides AUTH policy: accept anyone by default, or only the users of a credentials file.

Passwords are checked and forgotten: only the mechanism and user name leave this module.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Identity:
    """What a successful AUTH leaves behind. `login` is what aiosmtpd exposes as session.login_data."""

    mechanism: str
    login: str


class Credentials:
    """`None` users means any user and password are accepted (the lab's default)."""

    def __init__(self, users: dict[str, str] | None = None):
        self.users = users

    @classmethod
    def from_file(cls, path: str | Path) -> Credentials:
        """One `user:password` per line; blank lines and lines starting with # are ignored."""
        users = {}
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, password = line.partition(":")
            if not sep:
                raise ValueError(f"{path}:{n}: expected user:password")
            users[user] = password
        return cls(users)

    @property
    def open(self) -> bool:
        return self.users is None

    def check_password(self, user: str, password: str) -> bool:
        if self.users is None:
            return True
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def check_cram(self, user: str, challenge: bytes, digest: str) -> bool:
        if self.users is None:
            return True
        secret = self.users.get(user)
        if secret is None:
            return False
        expected = hmac.new(secret.encode(), challenge, "md5").hexdigest()
        return hmac.compare_digest(expected, digest.lower())
