"""contexts.py: a context arrives in the sandbox exactly as given, or is refused saying where."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm_sandbox import ContextError
from rlm_sandbox.contexts import check_context

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@given(st.lists(json_like, max_size=4) | st.dictionaries(st.text(max_size=3), json_like, max_size=4))
def test_what_json_carries_faithfully_is_accepted(context):
    check_context(context)
    assert json.loads(json.dumps(context)) == context


@given(json_like, st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none())
def test_a_non_str_key_anywhere_is_refused_with_its_place(inner, key):
    context = {"outer": [inner, {key: inner}]}
    with pytest.raises(ContextError, match=r"context\['outer'\]\[1\] has the key"):
        check_context(context)


def test_subclasses_and_odd_values():
    class Name(str):
        pass

    check_context({Name("k"): [Name("v")]})
    check_context(["a", ("nested", "tuple")])  # arrives as a list, as JSON carries it
    with pytest.raises(ContextError, match=r"context\['a'\] has the key 1"):
        check_context(OrderedDict(a={1: 2}))
    check_context([b"raw", {"scan.png": bytearray(b"png")}])  # bytes travel raw beside the JSON
    with pytest.raises(ContextError, match=r"context\[0\] is a complex"):
        check_context([1j])
    with pytest.raises(ContextError, match="not set"):
        check_context({1, 2})
