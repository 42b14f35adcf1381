"""Context description, system and turn prompts, and the truncated output view."""

from __future__ import annotations

import re

import pytest

from rlm_sandbox.prompts import (
    PREVIEW_CHARS,
    ContextInfo,
    describe_context,
    final_request,
    format_exec_output,
    no_code_nudge,
    system_prompt,
    task_prompt,
    truncate_middle,
    turn_prompt,
)

# -- describe_context -------------------------------------------------------------


def test_describe_string_context() -> None:
    context = "A" * 10_000 + "SECRET-TAIL"
    info = describe_context(context)
    assert info.type_name == "str"
    assert info.total_chars == 10_011
    assert info.num_items is None
    assert info.preview == "A" * PREVIEW_CHARS
    assert "SECRET-TAIL" not in info.model_dump_json()


def test_describe_list_context() -> None:
    context = [f"doc {i} " + "x" * i for i in range(1000)]
    info = describe_context(context)
    assert info.type_name == "list"
    assert info.num_items == 1000
    assert info.total_chars == sum(len(s) for s in context)
    assert info.item_chars[:3] == [6, 7, 8]
    assert len(info.item_chars) == 20
    assert len(info.preview) <= PREVIEW_CHARS
    assert info.preview.startswith("['doc 0 '")


def test_describe_dict_context_counts_keys_and_nested_values() -> None:
    context = {"title": "abc", "pages": ["12345", "67"], "n": 12345}
    info = describe_context(context)
    assert info.type_name == "dict"
    assert info.num_items == 3
    assert info.total_chars == len("title") + 3 + len("pages") + 7 + len("n") + 5
    assert info.preview.startswith("{")


def test_describe_huge_nested_context_stays_bounded() -> None:
    context = {f"key{i}": {"text": "y" * 5000, "tags": list(range(50))} for i in range(2000)}
    info = describe_context(context)
    assert info.num_items == 2000
    assert info.total_chars > 10_000_000
    assert len(info.preview) <= PREVIEW_CHARS


def test_describe_deeply_nested_context_does_not_recurse() -> None:
    context: list[object] = ["leaf"]
    for _ in range(5000):
        context = [context]
    assert describe_context(context).total_chars == 4


def test_context_info_rejects_a_long_preview() -> None:
    with pytest.raises(ValueError):
        ContextInfo(type_name="str", total_chars=1, preview="x" * (PREVIEW_CHARS + 1))


# -- system prompt ------------------------------------------------------------------


def test_system_prompt_explains_the_environment() -> None:
    info = describe_context("hello world " * 100)
    prompt = system_prompt(info, depth=0, max_depth=1, max_iterations=7)
    for needle in [
        "`context`",
        "llm_query(prompt, model=None)",
        "llm_query_batched(prompts, model=None)",
        "rlm_query",
        "rlm_query_batched",
        "SHOW_VARS()",
        "print",
        "FINAL(",
        "FINAL_VAR(",
        "```repl",
        "20,000 characters",
        "7 turns",
        "1,200 characters",
        "concurrently",
    ]:
        assert needle in prompt, needle
    assert "hello world" in prompt  # the preview
    assert "behave exactly like `llm_query`" in prompt  # max_depth=1: no nested REPL


def test_system_prompt_describes_recursion_when_depth_allows() -> None:
    info = describe_context(["a", "b"])
    recursive = system_prompt(info, depth=0, max_depth=2, max_iterations=5)
    assert "its own Python session" in recursive
    assert "- items: 2" in recursive
    at_last_level = system_prompt(info, depth=1, max_depth=2, max_iterations=5)
    assert "its own Python session" not in at_last_level
    assert "behave exactly like" in at_last_level
    assert "nesting level 1" in at_last_level


def test_system_prompt_never_contains_more_than_the_preview() -> None:
    context = "start " + "z" * 100_000 + " END-MARKER"
    prompt = system_prompt(describe_context(context), depth=0, max_depth=1, max_iterations=3)
    assert "END-MARKER" not in prompt
    assert len(prompt) < 6_000


# -- turn messages ----------------------------------------------------------------------


def test_turn_prompts() -> None:
    assert "Turn 1 of 5" in turn_prompt(1, 5)
    assert "4 more" in turn_prompt(1, 5)
    assert "last turn" in turn_prompt(5, 5)
    assert "```repl" in no_code_nudge() and "FINAL(" in no_code_nudge()
    assert "FINAL(" in final_request()
    assert "Question: how many?" in task_prompt("how many?")


# -- output view ------------------------------------------------------------------------


def test_short_output_is_unchanged() -> None:
    assert format_exec_output("hello\n", "", None) == "hello"
    assert format_exec_output("", "", None) == "(no output)"


def test_stderr_and_error_are_labelled() -> None:
    shown = format_exec_output("out\n", "warn\n", "ZeroDivisionError: division by zero")
    assert shown == "out\nstderr:\nwarn\nerror:\nZeroDivisionError: division by zero"


def test_long_output_is_truncated_with_an_explicit_marker() -> None:
    stdout = "".join(f"line {i}\n" for i in range(10_000))
    shown = format_exec_output(stdout, "", None, limit=1_000)
    cut = len(stdout) - 1_000
    assert f"[... {cut:,} more characters truncated ...]" in shown
    assert shown.startswith("line 0\n")
    assert shown.rstrip().endswith("line 9999")
    assert len(shown) < 1_100


def test_default_limit_is_20000() -> None:
    shown = format_exec_output("x" * 32_345, "", None)
    assert "[... 12,345 more characters truncated ...]" in shown


def test_a_huge_stdout_cannot_hide_the_error() -> None:
    shown = format_exec_output("x" * 100_000, "", "Traceback ...\nValueError: the real problem", limit=2_000)
    assert "ValueError: the real problem" in shown
    assert len(shown) < 2_200


def test_sandbox_truncation_note_is_always_shown() -> None:
    shown = format_exec_output("partial", "", None, "output over 1 MiB was cut by the sandbox")
    assert shown.endswith("[note: output over 1 MiB was cut by the sandbox]")
    assert format_exec_output("", "", None, "note only") == "[note: note only]"


def test_truncate_middle_keeps_both_ends() -> None:
    text = "HEAD" + "m" * 1000 + "TAIL"
    cut = truncate_middle(text, 100)
    assert cut.startswith("HEAD") and cut.endswith("TAIL")
    assert re.search(r"\[\.\.\. 908 more characters truncated \.\.\.\]", cut)
    assert truncate_middle("short", 100) == "short"
