"""A run is found by its id or a unique prefix of it, by the same rule in the writer, the reader
and the API; SQL's LIKE wildcards in a prefix match only themselves."""
import pytest

from engine import api
from engine.config import resolve
from engine.errors import RunStateError
from engine.runstate.plan import create_run
from engine.runstate.reader import Reader
from engine.runstate.store import Store

from conftest import TINY_PRESET


def test_a_prefix_with_an_underscore_matches_only_ids_that_start_with_it(tmp_path):
    home = tmp_path / "home"
    store = Store(home)
    under, _ = create_run(store, resolve(TINY_PRESET, ["name=a_b"]), "p")
    other, _ = create_run(store, resolve(TINY_PRESET, ["name=axb"]), "p")
    for find in (store.run, Reader(home).run):
        assert find("a_b")["id"] == under and find("axb")["id"] == other and find(under)["id"] == under
        assert find("a") is None and find("a%") is None  # two runs start with "a"; "%" is no wildcard
    assert api.run_detail("a_b", home=home).summary.id == under
    with pytest.raises(RunStateError, match="no run 'a'"):
        api.run_detail("a", home=home)
