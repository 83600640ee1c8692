"""The built-in sample set, sent to a real lab, gives the verdict each sample is meant to show."""

from __future__ import annotations

from lab import samples


def test_every_sample_shows_what_it_is_for(lab):
    lines = samples.send_all(lab.engine.ports, lab.config.data_dir)
    assert all(line.startswith("sent:") for line in lines), lines
    store = lab.store()
    ids = store.ids()
    store.close()
    assert len(ids) == len(samples.SAMPLES)
    got = {}
    for sample, mid in zip(samples.SAMPLES, ids, strict=True):
        v = lab.wait(mid).verdict
        first = {}
        for c in v.checks:  # some ids report more than once (From and MAIL FROM); the first is the headline
            first.setdefault(c.id, c.result or c.level.value)
        got[sample.title] = (v.level.value, first, v.disposition)
    level, checks, disposition = got["passes everything"]
    assert level == "pass" and checks["dmarc"] == "pass" and checks["dkim.shop.maillab.test.lab"] == "pass"
    assert disposition.startswith("Inbox")
    level, checks, _ = got["port 25 without AUTH"]
    assert checks["transport.port"] == "warn" and checks["dmarc"] == "pass"
    level, checks, _ = got["broken DKIM body"]
    assert checks["dkim.shop.maillab.test.lab"] == "fail" and checks["dmarc"] == "pass"  # SPF still aligns
    level, checks, disposition = got["spoofs a DMARC p=reject domain"]
    assert level == "fail" and checks["spf.mailfrom"] == "fail" and disposition.startswith("Reject")
    level, checks, _ = got["from a role address"]
    assert checks["sender.role-address"] == "warn"
    level, checks, _ = got["SPF softfail"]
    assert checks["spf.mailfrom"] == "softfail" and checks["dmarc"] == "fail"


def test_the_newsletters_are_judged_by_gmails_bulk_rules(lab):
    """Issue 7's sample pair: one newsletter meets every Gmail bulk rule, the other fails several, each failure
    naming the rule, Gmail's reply code and the fix."""
    assert all(line.startswith("sent:") for line in samples.send_all(lab.engine.ports, lab.config.data_dir))
    store = lab.store()
    ids = store.ids()
    store.close()
    verdicts = {s.title: lab.wait(mid).verdict for s, mid in zip(samples.SAMPLES, ids, strict=True)}
    good = verdicts["newsletter that meets Gmail's bulk rules"]
    assert good.profile == "gmail-bulk" and good.disposition.startswith("Would be delivered by Gmail (bulk)")
    assert all(c.level.value == "pass" for c in good.checks if c.family == "bulk"), \
        [(c.id, c.summary) for c in good.checks if c.family == "bulk" and c.level.value != "pass"]
    bad = verdicts["newsletter that breaks Gmail's bulk rules"]
    assert bad.profile == "gmail-bulk" and bad.disposition.startswith("Would be rejected by Gmail (bulk)")
    failed = {c.id: c for c in bad.checks if c.family == "bulk" and c.level.value in ("fail", "warn")}
    assert {"bulk.spf", "bulk.dkim", "bulk.fcrdns", "bulk.tls", "bulk.one-click"} <= set(failed)
    for c in failed.values():
        assert c.evidence["provider-code"] and c.fix, c.id
    assert "5.7.27" in failed["bulk.spf"].evidence["provider-code"]
    assert "5.7.29" in failed["bulk.tls"].evidence["provider-code"]
