"""The local store: what must reach Power BI after each write (no network)."""

from __future__ import annotations

from target_powerbi.mapping import Row
from target_powerbi.store import Store


def make(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    store.register_table("t", "s", {"name": "t", "columns": []})
    store.register_table("t__c", "s", {"name": "t__c", "columns": []})
    return store


def rec(key, value, children=()):
    rows = [Row("t", key, {"k": key, "v": value})]
    rows += [Row("t__c", f"{key}/{i}", {"c": c}) for i, c in enumerate(children)]
    return (key, rows)


def pending(store, name):
    state = store.table(name)
    return [r for _, chunk in store.chunks(name, state.pushed_seq, 100) for r in chunk]


def test_new_keys_append_changed_pushed_keys_make_the_table_dirty(tmp_path):
    store = make(tmp_path)
    result = store.write([rec("a", 1, ["x"]), rec("b", 2)], ["t", "t__c"], version=None, run="r1")
    assert result.appended == 3
    assert [r["k"] for r in pending(store, "t")] == ["a", "b"]
    # changed before anything was pushed: still just pending, no reload
    store.write([rec("a", 5, ["x"])], ["t", "t__c"], version=None, run="r1")
    assert not store.table("t").dirty
    store.begin_push(["t", "t__c"])
    store.end_push("t", store.max_seq("t"), 2)
    store.end_push("t__c", store.max_seq("t__c"), 1)
    assert pending(store, "t") == [] and not store.table("t").inflight
    # the same rows again change nothing
    again = store.write([rec("a", 5, ["x"]), rec("b", 2)], ["t", "t__c"], version=None, run="r2")
    assert again.unchanged == 3 and again.appended == 0
    assert not store.table("t").dirty
    # a changed pushed row and a vanished pushed child make their tables dirty
    store.write([rec("a", 6)], ["t", "t__c"], version=None, run="r2")
    assert store.table("t").dirty and store.table("t__c").dirty
    assert sorted(r["v"] for r in store.rows("t")) == [2, 6]
    assert store.rows("t__c") == []


def test_a_push_interrupted_in_flight_is_recovered_as_dirty(tmp_path):
    store = make(tmp_path)
    store.write([rec("a", 1)], ["t", "t__c"], version=None, run="r1")
    store.begin_push(["t"])
    store.close()
    reopened = Store(tmp_path / "s.sqlite3")
    assert reopened.recover_unclean() == ["t"]
    state = reopened.table("t")
    assert state.dirty and not state.inflight
    reopened.reloaded("t", reopened.max_seq("t"), 1)
    assert not reopened.table("t").dirty and pending(reopened, "t") == []


def test_activate_version_drops_older_rows_and_their_children(tmp_path):
    store = make(tmp_path)
    store.write([rec("a", 1, ["x"]), rec("b", 1, ["y"])], ["t", "t__c"], version=1, run="r1")
    store.reloaded("t", store.max_seq("t"), 2)  # Power BI holds the roots, not the children
    store.write([rec("a", 1, ["x"])], ["t", "t__c"], version=2, run="r2")
    assert store.version_rows("t", 2, "r2") == 1
    assert store.activate_version(["t", "t__c"], 2, "r2") == 1
    assert [r["k"] for r in store.rows("t")] == ["a"]
    assert store.rows("t__c") == [{"c": "x"}]
    assert store.table("t").dirty  # b was pushed: reload
    assert not store.table("t__c").dirty  # y never reached Power BI: nothing to undo


def test_overwrite_empties_each_table_once_per_run(tmp_path):
    store = make(tmp_path)
    store.write([rec("a", 1)], ["t", "t__c"], version=None, run="r1")
    assert store.reset_for_overwrite(["t", "t__c"], "r2") is True
    assert store.rows("t") == [] and store.table("t").dirty
    store.write([rec("b", 1)], ["t", "t__c"], version=None, run="r2")
    assert store.reset_for_overwrite(["t", "t__c"], "r2") is False
    assert [r["k"] for r in store.rows("t")] == ["b"]


def test_dataset_created_makes_every_stored_row_pending(tmp_path):
    store = make(tmp_path)
    store.write([rec("a", 1)], ["t", "t__c"], version=None, run="r1")
    store.reloaded("t", store.max_seq("t"), 1)
    store.dataset_created("new-id")
    assert store.get_meta("dataset_id") == "new-id"
    assert [r["k"] for r in pending(store, "t")] == ["a"]
