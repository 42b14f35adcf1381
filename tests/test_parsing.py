"""Code-fence extraction and textual FINAL / FINAL_VAR detection."""

from __future__ import annotations

import pytest

from rlm_sandbox.parsing import FinalAnswer, find_code_blocks, find_final, split_reasoning

# -- code blocks ----------------------------------------------------------------------


def test_repl_and_python_blocks_in_order() -> None:
    text = "Plan.\n```repl\nx = 1\nprint(x)\n```\nthen\n```python\ny = 2\n```\n"
    assert find_code_blocks(text) == ["x = 1\nprint(x)", "y = 2"]


def test_other_languages_and_bare_fences_are_not_code() -> None:
    text = '```json\n{"a": 1}\n```\n```\nplain\n```\n```bash\nls\n```\n```repl\nok()\n```'
    assert find_code_blocks(text) == ["ok()"]


def test_fence_tolerance_trailing_spaces_crlf_indent_case() -> None:
    text = "intro\r\n```repl   \r\na = 1\r\n\r\nb = 2\r\n```  \r\n  ```Python\r\n  c = 3\r\n  ```\r\n"
    assert find_code_blocks(text) == ["a = 1\n\nb = 2", "  c = 3"]


def test_unclosed_final_fence_runs_to_the_end() -> None:
    text = "```repl\nfirst()\n```\nnow:\n```repl\nsecond()\nthird()"
    assert find_code_blocks(text) == ["first()", "second()\nthird()"]


def test_fence_markers_inside_another_block_do_not_open_code() -> None:
    text = "````markdown\n```repl\nnot_code()\n```\n````\n```repl\nreal()\n```"
    assert find_code_blocks(text) == ["real()"]


def test_inline_backticks_are_not_fences() -> None:
    assert find_code_blocks("use ```repl blocks``` like this") == []


def test_empty_block_and_no_blocks() -> None:
    assert find_code_blocks("```repl\n```") == [""]
    assert find_code_blocks("no code at all") == []


# -- FINAL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FINAL(42)", "42"),
        ("Done.\nFINAL(Paris)\n", "Paris"),
        ("   FINAL( spaced out )", "spaced out"),
        ("FINAL(f(x) = (a+b))", "f(x) = (a+b)"),
        ("FINAL(The answer is 7 (seven)). Thanks!", "The answer is 7 (seven)"),
        ('FINAL("a ) inside quotes")', "a ) inside quotes"),
        ("FINAL(it's ')' and \"(\" (both))", "it's ')' and \"(\" (both)"),
        ("FINAL(the author's answer (final))", "the author's answer (final)"),
        ("FINAL(line one\nline two (cont.)\nline three)", "line one\nline two (cont.)\nline three"),
        ("FINAL(unbalanced (never closed)", "unbalanced (never closed"),
        ("FINAL(sad :( face)", "sad :( face"),
        ("FINAL('single quoted')", "single quoted"),
        ('FINAL("""triple (quoted)""")', "triple (quoted)"),
        ("FINAL('a', 'b')", "'a', 'b'"),
    ],
)
def test_final_value(text: str, expected: str) -> None:
    assert find_final(text) == FinalAnswer(kind="value", text=expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FINAL_VAR(result)", "result"),
        ("FINAL_VAR( result )", "result"),
        ('FINAL_VAR("result")', "result"),
        ("FINAL_VAR('answer_text')", "answer_text"),
        ("Stored it.\r\n  FINAL_VAR(summary)\r\n", "summary"),
    ],
)
def test_final_var(text: str, expected: str) -> None:
    assert find_final(text) == FinalAnswer(kind="var", text=expected)


def test_final_inside_a_code_block_is_ignored() -> None:
    text = "Let me run:\n```repl\nanswer = compute()\nFINAL(answer)\n```\n"
    assert find_final(text) is None
    assert find_final("```python\nFINAL_VAR(x)\n```") is None
    assert find_final("```repl\nprint(1)\nFINAL(unclosed fence swallows this)") is None


def test_final_after_a_code_block_is_found() -> None:
    text = "```repl\nFINAL(wrong)\n```\nFINAL(right)"
    assert find_final(text) == FinalAnswer(kind="value", text="right")


def test_unbalanced_final_stops_at_the_next_fence() -> None:
    text = "FINAL(partial answer\n```repl\nx = 1\n```\n"
    assert find_final(text) == FinalAnswer(kind="value", text="partial answer")


def test_final_must_start_a_line() -> None:
    assert find_final("I will call FINAL(x) when done.") is None
    assert find_final("NOTFINAL(x)") is None
    assert find_final("`FINAL(x)`") is None


def test_first_final_wins() -> None:
    assert find_final("FINAL_VAR(a)\nFINAL(b)") == FinalAnswer(kind="var", text="a")
    assert find_final("FINAL(b)\nFINAL_VAR(a)") == FinalAnswer(kind="value", text="b")


def test_no_final() -> None:
    assert find_final("") is None
    assert find_final("Still working on it.\n```repl\nprint(len(context))\n```") is None
    assert find_final("FINALLY done") is None


# -- reasoning and cut replies --------------------------------------------------------


@pytest.mark.parametrize(
    "text, visible, reasoning",
    [
        ("<think>FINAL(no)</think>\nFINAL(yes)", "FINAL(yes)", "FINAL(no)"),
        ("<THINK>a</THINK>b<think>c</think>d", "bd", "a\n\nc"),
        ("opened by the template FINAL(no)</think>\nanswer", "answer", "opened by the template FINAL(no)"),
        ("answer\n<think>never closed FINAL(no)", "answer", "never closed FINAL(no)"),
        ("<thinking>x</thinking>y", "y", "x"),
        ("no reasoning here", "no reasoning here", ""),
    ],
)
def test_split_reasoning(text: str, visible: str, reasoning: str) -> None:
    assert split_reasoning(text) == (visible, reasoning)


def test_complete_only_drops_an_unclosed_last_block() -> None:
    cut = "Plan.\n```repl\nx = 1\n```\nMore.\n```repl\nimport os\nos.remove('f')\ny = "
    assert find_code_blocks(cut) == ["x = 1", "import os\nos.remove('f')\ny = "]
    assert find_code_blocks(cut, complete_only=True) == ["x = 1"]
    closed = "```repl\nx = 1\n```"
    assert find_code_blocks(closed, complete_only=True) == ["x = 1"]
