"""ListSource merges refused groups into the newest-first message list by time, and maps indices both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import message

from lab.core.model import Attempt, Capture, Envelope, Listener, Transport
from lab.store import Store, Summary
from lab.ui.listsource import ListSource

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def refuse(store: Store, seconds: float, rcpt: str, reply: str = "550 5.1.1 gone") -> None:
    store.add_attempt(Attempt(at=at(seconds), stage="rcpt", reply=reply, mail_from="app@example.com", rcpt=rcpt,
                              txn=f"t{seconds}", rule="rule #1 (test)"))


def deliver(store: Store, seconds: float, rcpt: str = "bob@example.net") -> int:
    return store.add(Capture(message(to=rcpt), Envelope(mail_from="app@example.com", rcpt_to=(rcpt,)),
                             Transport(Listener.RELAY), received_at=at(seconds)))


def shape(source: ListSource) -> list:
    out = []
    for i in range(source.count()):
        row = source.row(i)
        out.append(row.id if isinstance(row, Summary) else row.group.rcpt)
    return out


def test_groups_sit_among_messages_by_time_and_indices_map_both_ways(tmp_path):
    store = Store(tmp_path / "m.db")
    m1 = deliver(store, 0)
    refuse(store, 10, "gone@example.net")
    m2 = deliver(store, 20)
    m3 = deliver(store, 30)
    refuse(store, 40, "full@example.net", "452 4.2.2 full")
    refuse(store, 41, "gone2@example.net")
    m4 = deliver(store, 50)
    source = ListSource(store)
    source.invalidate()
    assert shape(source) == [m4, "gone2@example.net", "full@example.net", m3, m2, "gone@example.net", m1]
    for i in range(source.count()):
        row = source.row(i)
        key = row.id if isinstance(row, Summary) else row.key
        assert source.index_of(key) == i
    assert source.refused_rows == 3

    # a retry that gets through ends its group: the row goes, the message carries the tries
    refuse(store, 60, "later@example.net", "451 4.7.1 greylisted")
    assert source.attempts_changed()
    source.invalidate()
    assert shape(source)[0] == "later@example.net"
    m5 = deliver(store, 70, "later@example.net")
    source.invalidate()
    assert shape(source)[:2] == [m5, "later@example.net"]  # mail arriving re-reads the groups once a second
    source.rejudge_every = 0
    source.invalidate()
    assert shape(source)[:2] == [m5, m4]
    assert source.tries(m5).tries == 1 and source.tries(m4) is None

    source.set_filter("verdict:refused")
    assert shape(source) == ["gone2@example.net", "full@example.net", "gone@example.net"]
    source.set_filter("full")
    assert shape(source) == ["full@example.net"]
    source.set_filter("verdict:fail")  # a message verdict: refused groups have none
    assert "gone@example.net" not in shape(source)
    store.close()


def test_no_attempts_costs_one_query_and_no_group_rows(tmp_path):
    store = Store(tmp_path / "m.db")
    ids = [deliver(store, n) for n in range(5)]
    source = ListSource(store)
    source.invalidate()
    assert shape(source) == ids[::-1] and source.refused_rows == 0 and not source.attempts_changed()
    store.close()


def test_the_total_is_counted_once_a_change_and_not_again_when_no_filter_is_set(tmp_path):
    """The status line and the welcome screen want every stored message; the list's own count already read it
    when no filter is set (a flush counted the store three times)."""
    store = Store(tmp_path / "db")
    for n in range(3):
        deliver(store, n)
    source = ListSource(store)
    asked = []
    real = store.count
    store.count = lambda where=None: (asked.append(where), real(where))[1]
    assert source.count() == 3 and source.total() == 3 and len(asked) == 1
    source.set_filter("verdict:fail")
    assert source.count() == 0 and source.total() == 3 and len(asked) == 3  # filtered, then everything once
    assert source.total() == 3 and len(asked) == 3
    deliver(store, 5)
    source.invalidate()
    assert source.total() == 4
    store.close()
