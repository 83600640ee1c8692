"""Provides DKIM (RFC 6376, RFC 8463) verification of every signature, with the reason each one fails.

dkimpy returns a bare bool and only logs why; here each verification gets its own logger and DNS
function, so the result can say "body hash mismatch" or "key revoked" instead of just "fail".
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import dkim

from lab.core import dkimfast
from lab.core.context import Context
from lab.core.dnsview import DnsTempError, DnsView
from lab.core.results import AuthResult, CheckResult, Level, check

dkimfast.install()  # dkimpy's slowest pure-Python helpers, replaced where they agree (lab.core.dkimfast)

MIN_KEY_BITS = 1024
_SPACES = re.compile(r"\s+")
MAX_SIGNATURES = 20  # verified per message; the rest are reported, not checked (receivers cap this too)

# the rule behind each failure reason
_SECTIONS = {
    "body hash mismatch": "RFC 6376 §6.1.3",
    "signature mismatch": "RFC 6376 §6.1.3",
    "no key for signature": "RFC 6376 §6.1.2",
    "key revoked": "RFC 6376 §3.6.1",
    "key malformed": "RFC 6376 §3.6.1",
    "key type mismatch": "RFC 6376 §3.6.1",
    "key too short": "RFC 8301 §3.2",
    "signature expired": "RFC 6376 §3.5",
    "timestamp in the future": "RFC 6376 §3.5",
    "From not signed": "RFC 6376 §5.4",
    "invalid signature": "RFC 6376 §6.1.1",
}


class Collector(logging.Handler):
    """Keeps what dkimpy logs: its only way of saying why a signature or seal failed."""

    def __init__(self, level: int = logging.INFO):
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def key_lookup(view: DnsView, seen: dict):
    """dkimpy's `dnsfunc` over the lab's DNS view: the key record, with what happened kept in `seen`
    ("record", or "temperror" when the lookup could not be answered, which dkimpy only logs)."""

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii", "replace").rstrip(".")
        try:
            answer = view.lookup(qname, "TXT")
        except DnsTempError as exc:
            seen.setdefault("temperror", str(exc))
            raise dkim.DnsTimeoutError(str(exc)) from exc
        records = [b"".join(parts) for parts in answer.records]
        keys = [r for r in records if b"p=" in r] or records
        seen["record"] = keys[0] if keys else None
        return keys[0] if keys else None

    return dnsfunc


def check_dkim(ctx: Context) -> list[CheckResult]:
    headers = ctx.message.get_all("dkim-signature")
    if not headers:
        return [check("dkim.none", Level.WARN, "The message carries no DKIM signature", result=AuthResult.NONE,
                      ref="RFC 6376",
                      fix="Sign outgoing mail with DKIM for the From domain (d= equal to or a parent of it), "
                          "and publish the public key at <selector>._domainkey.<domain>.")]
    collector = Collector()
    logger = logging.Logger("maillab.dkim", logging.INFO)
    logger.addHandler(collector)
    try:
        verifier = dkim.DKIM(ctx.capture.raw, logger=logger, minkey=MIN_KEY_BITS)
    except Exception as exc:  # noqa: BLE001 - a message dkimpy cannot split is a permerror
        return [check("dkim.unparsable", Level.FAIL, f"DKIM cannot parse the message headers: {exc}",
                      result=AuthResult.PERMERROR, ref="RFC 6376 §3.4",
                      fix="Make every header line 'Name: value' with CRLF line endings.")]
    results = []
    seen: dict[str, int] = {}
    extra = len(headers) - MAX_SIGNATURES
    if extra > 0:  # each verification re-hashes the message: bound the work one message can demand
        headers = headers[:MAX_SIGNATURES]
    for idx, header in enumerate(headers):
        collector.messages.clear()
        result = _verify(ctx, verifier, idx, header.raw, collector)
        n = seen.get(result.id, 0)
        seen[result.id] = n + 1
        if n:
            result = check(f"{result.id}#{n + 1}", result.level, result.summary, result=result.result,
                           fix=result.fix, ref=result.ref, **{k.replace("-", "_"): v
                                                              for k, v in result.evidence.items()})
        results.append(result)
    if extra > 0:
        results.append(check("dkim.more", Level.WARN, f"{extra} more DKIM signatures were not verified (the "
                             f"lab checks the first {MAX_SIGNATURES})", result=AuthResult.NEUTRAL, ref="RFC 6376 §6.1",
                             fix="Sign once or twice per message; dozens of signatures look like abuse.",
                             signatures=extra + MAX_SIGNATURES))
    return results


def _verify(ctx: Context, verifier: dkim.DKIM, idx: int, raw_value: str, collector: Collector) -> CheckResult:
    try:
        tags = dkim.util.parse_tag_value(raw_value.encode("utf-8", "surrogateescape"))
    except Exception:  # noqa: BLE001
        tags = {}
    d = _tag(tags, b"d").lower() or "unknown"
    s = _tag(tags, b"s") or "unknown"
    cid = f"dkim.{d}.{s}"
    h = [x.strip().lower() for x in _tag(tags, b"h").split(":") if x.strip()]
    evidence = {
        "d": d, "s": s, "a": _tag(tags, b"a"), "c": _tag(tags, b"c") or "simple/simple",
        "h": ":".join(h), "i": _tag(tags, b"i"), "l": _tag(tags, b"l"),
        "key_name": f"{s}._domainkey.{d}", "b": _tag(tags, b"b")[:12],
    }
    lookup: dict[str, object] = {}
    dnsfunc = key_lookup(ctx.dns, lookup)

    def result(level: Level, word: str, summary: str, fix: str | None = None, **more) -> CheckResult:
        ref = _SECTIONS.get(more.get("reason", ""), "RFC 6376 §6.1" if word != "pass" else "RFC 6376 §6.3")
        return check(cid, level, summary, result=word, fix=fix, ref=ref, **evidence, **more)

    if not tags:
        return result(Level.FAIL, AuthResult.PERMERROR, "DKIM-Signature tags cannot be parsed",
                      "Produce the signature with a DKIM library; the header must be tag=value; pairs.")
    if "from" not in h:
        return result(Level.FAIL, AuthResult.PERMERROR, "The signature does not cover the From header",
                      "Include From in h= (RFC 6376 §5.4 requires it).", reason="From not signed")
    try:
        ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
        error = None
    except Exception as exc:  # noqa: BLE001 - dkimpy raises a zoo of types; each is a finding
        ok, error = False, exc
    record = lookup.get("record")
    key = _key_facts(record)
    evidence.update({"key_record": _short(record), **key})
    more = {"l_note": "l= lets anyone append to the body" if evidence["l"] else None}
    if ok:
        note = ""
        if key.get("key_type") == "rsa" and key.get("key_bits") and int(key["key_bits"]) < 2048:
            note = f" ({key['key_bits']}-bit key: 2048 is recommended)"
        return result(Level.PASS, AuthResult.PASS, f"Valid signature by {d} (selector {s}){note}", **more)
    algorithm, key_type = evidence["a"].partition("-")[0], key.get("key_type")
    if key_type and algorithm in ("rsa", "ed25519") and algorithm != key_type:
        return result(Level.FAIL, AuthResult.PERMERROR, f"The key at {evidence['key_name']} is {key_type}, but "
                      f"the signature uses {evidence['a']}", f"Publish the {algorithm} key under this selector, "
                      "or sign with the algorithm of the published key.", reason="key type mismatch")
    return _failure(result, d, s, error, lookup, record, collector.messages)


def _failure(result, d: str, s: str, error, lookup: dict, record, logged: list[str]) -> CheckResult:
    name = f"{s}._domainkey.{d}"
    text = re.sub(r"b'([^']*)'", r"\1", str(error) if error else " ".join(logged))  # dkimpy prints bytes reprs
    if "temperror" in lookup:
        return result(Level.WARN, AuthResult.TEMPERROR, f"Key lookup at {name} failed temporarily",
                      "Check that the domain's name servers answer; receivers will retry later.",
                      reason=lookup["temperror"])
    if isinstance(error, dkim.ValidationError) and "body hash mismatch" in text:
        return result(Level.FAIL, AuthResult.FAIL, "Body hash mismatch: the body changed after it was signed",
                      "Sign the message last: nothing (footers, tracking, re-encoding, line-ending conversion) may "
                      "change the body after signing. Relaxed body canonicalisation (c=relaxed/relaxed) tolerates "
                      "whitespace changes only.", reason="body hash mismatch", detail=text)
    if isinstance(error, dkim.ValidationError) and "x= value is past" in text:
        return result(Level.FAIL, AuthResult.FAIL, "The signature has expired (x= is in the past)",
                      "Sign closer to sending, or use a longer expiry (x=).", reason="signature expired", detail=text)
    if isinstance(error, dkim.ValidationError) and "in the future" in text:
        return result(Level.FAIL, AuthResult.FAIL, "The signature timestamp (t=) is in the future",
                      "Fix the signing host's clock.", reason="timestamp in the future", detail=text)
    if record is None and "record" in lookup:
        return result(Level.FAIL, AuthResult.PERMERROR, f"No DKIM key is published at {name}",
                      f'Publish the public key: TXT at {name}: "v=DKIM1; k=rsa; p=<base64 public key>".',
                      reason="no key for signature")
    if record is not None and re.search(rb"(^|;)\s*p=\s*(;|$)", record):
        return result(Level.FAIL, AuthResult.PERMERROR, f"The key at {name} is revoked (empty p=)",
                      "Sign with a current selector, or publish the key again.", reason="key revoked")
    if "public key too small" in text:
        return result(Level.FAIL, AuthResult.PERMERROR,
                      f"The key at {name} is too short; receivers ignore keys under {MIN_KEY_BITS} bits",
                      "Generate a 2048-bit RSA key (or add an ed25519 signature beside it) and publish it.",
                      reason="key too short", detail=text)
    # dkimpy logs at ERROR level only when it cannot load the key (bad v=, no p=, bad base64, unknown k=)
    if isinstance(error, dkim.KeyFormatError) or (error is None and logged):
        return result(Level.FAIL, AuthResult.PERMERROR, f"The key record at {name} is malformed",
                      'Publish "v=DKIM1; k=rsa|ed25519; p=<base64 key>" as one TXT record (long keys may be '
                      "split into several strings of one record).", reason="key malformed", detail=text)
    if error is not None:
        return result(Level.FAIL, AuthResult.PERMERROR, f"The signature is invalid: {text}",
                      "Produce the signature with a standard DKIM library.", reason="invalid signature", detail=text)
    return result(Level.FAIL, AuthResult.FAIL,
                  "Signature mismatch: the signed headers changed, or the key in DNS does not match the private key",
                  f"Check that {name} publishes the public half of the key you sign with, and that nothing "
                  "rewrites the signed headers (Subject tags, From rewriting) after signing.",
                  reason="signature mismatch", detail=text or None)


def _key_facts(record: bytes | None) -> dict[str, str]:
    """Key type and size from the published record, when it parses."""
    if not record:
        return {}
    return dict(_key_facts_of(bytes(record)))


@lru_cache(maxsize=256)
def _key_facts_of(record: bytes) -> tuple[tuple[str, str], ...]:
    """Cached by the record: every message signed with a key asks again (dkimpy just parsed it to verify)."""
    try:
        _pk, bits, ktag, _tlsrpt = dkim.evaluate_pk(b"key", record)
    except Exception:  # noqa: BLE001 - a malformed key is reported by the verification itself
        return ()
    return (("key_type", (ktag or b"?").decode("ascii", "replace")), ("key_bits", str(bits)))


def _tag(tags: dict, name: bytes) -> str:
    value = tags.get(name, b"")
    return _SPACES.sub("", value.decode("utf-8", "replace"))


def _short(record: bytes | None) -> str | None:
    if record is None:
        return None
    text = record.decode("utf-8", "replace")
    return text if len(text) <= 80 else text[:60] + "…" + text[-12:]
