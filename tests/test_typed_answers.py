"""Typed answers: completion(..., output=...) validates the answer; FINAL of structured
values crosses the channel as JSON; FINAL_VAR takes a name or the variable itself."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from rlm_sandbox.trajectory import read_trajectory

from .test_rlm import fake_openai, last_user_message, make_rlm, program, repl, turn_of  # noqa: F401


class Person(BaseModel):
    name: str
    age: int


def test_wrong_shape_first_then_right_one_gives_parsed(fake_openai, sandbox_image):
    def root(body):
        if turn_of(body) == 0:
            assert '"age"' in body["messages"][1]["content"], "the task shows the schema"
            return repl("person = {'name': 'Ada'}\nFINAL(person)")
        told = last_user_message(body)
        assert "not accepted" in told and "age" in told and "Field required" in told
        return repl("person['age'] = 36\nFINAL(person)")

    fake_openai.set_responder(program(root))
    result = make_rlm(fake_openai, sandbox=True).completion("ctx", "who?", output=Person)
    assert result.stop_reason == "final", result.error
    assert result.iterations == 2
    assert result.parsed == Person(name="Ada", age=36)
    assert result.answer == '{"name": "Ada", "age": 36}', "a dict crosses as JSON, not str()"


def test_json_schema_output_and_a_textual_final(fake_openai):
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 2}

    def root(body):
        if turn_of(body) == 0:
            return 'FINAL(["1", 2])'
        assert "0: '1' is not of type 'integer'" in last_user_message(body)
        return "FINAL([1, 2])"

    fake_openai.set_responder(program(root))
    result = make_rlm(fake_openai).completion("ctx", "q", output=schema)
    assert (result.stop_reason, result.parsed, result.iterations) == ("final", [1, 2], 2)


def test_untyped_structured_final_is_json_and_numbers_stay_plain(fake_openai):
    fake_openai.set_responder(program(lambda body: repl("FINAL({'k': [1, 2.5, None], 'ok': True})")))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert result.answer == '{"k": [1, 2.5, null], "ok": true}'
    assert result.parsed is None
    fake_openai.set_responder(program(lambda body: repl("FINAL({1, 2})")))  # a set is not JSON: str() it is
    assert make_rlm(fake_openai).completion("ctx", "q").answer == "{1, 2}"


def test_an_answer_that_never_matches_ends_without_parsed(fake_openai):
    fake_openai.set_responder(program(lambda body: f"FINAL(not json {turn_of(body)})"))
    result = make_rlm(fake_openai, max_iterations=2).completion("ctx", "q", output=Person)
    assert result.stop_reason == "max_iterations"
    assert result.parsed is None
    assert "Input should be a valid dictionary" in (result.error or "")


def test_bad_output_argument_is_refused_before_anything_runs(fake_openai):
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        make_rlm(fake_openai).completion("ctx", "q", output={"type": "no-such-type"})
    with pytest.raises(TypeError, match="pydantic model class or a JSON-schema dict"):
        make_rlm(fake_openai).completion("ctx", "q", output=int)  # type: ignore[arg-type]
    assert fake_openai.request_count == 0


# ------------------------------------------------------------------ FINAL_VAR


@pytest.mark.parametrize(
    "code, answer",
    [
        ("ans = 'the answer'\nFINAL_VAR('ans')", "the answer"),
        ("ans = 'the answer'\nFINAL_VAR(ans)", "the answer"),  # the variable itself: its value
        ("count = 42\nFINAL_VAR(count)", "42"),
        ("rows = [1, 2]\nFINAL_VAR(rows)", "[1, 2]"),
    ],
)
def test_final_var_takes_a_name_or_the_variable(fake_openai, code, answer):
    fake_openai.set_responder(program(lambda body: repl(code)))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert (result.stop_reason, result.answer) == ("final", answer)


def test_a_misspelt_name_is_still_an_error(fake_openai):
    def root(body):
        if turn_of(body) == 0:
            return repl("answer = 'x'\nFINAL_VAR('answr')")
        assert "no variable named 'answr'" in last_user_message(body)
        return repl("FINAL_VAR('answer')")

    fake_openai.set_responder(program(root))
    assert make_rlm(fake_openai).completion("ctx", "q").answer == "x"


def test_the_same_failure_again_and_again_stops_the_run(fake_openai, tmp_path):
    fake_openai.set_responder(program(lambda body: "Here it is.\n" + repl("FINAL_VAR(undefined_thing)")))
    rlm = make_rlm(fake_openai, max_iterations=15)
    rlm.log_dir = tmp_path
    result = rlm.completion("ctx", "q")
    assert result.stop_reason == "error"
    assert result.error.startswith("RepeatedFailureError: the model repeated the same failing step 3 times")
    assert "NameError" in result.error
    assert result.iterations == 3
    assert fake_openai.request_count == 3, "no budget spent after the stop"
    assert read_trajectory(result.trajectory_path)[-1]["stop_reason"] == "error"


def test_different_failures_do_not_stop_the_run(fake_openai):
    def root(body):
        turn = turn_of(body)
        if turn < 4:
            return repl(f"raise ValueError('attempt {turn}')")
        return "FINAL(done)"

    fake_openai.set_responder(program(root))
    result = make_rlm(fake_openai).completion("ctx", "q")
    assert (result.stop_reason, result.answer, result.iterations) == ("final", "done", 5)


def test_a_hostile_answer_is_refused_not_crashed_on(fake_openai):
    # Deep nesting defeats recursive parsers; the host reports it as an invalid answer.
    deep = "[" * 50_000 + "]" * 50_000

    def root(body):
        if turn_of(body) == 0:
            return f"FINAL({deep})"
        assert "not accepted" in last_user_message(body)
        return "FINAL([[]])"

    fake_openai.set_responder(program(root))
    result = make_rlm(fake_openai).completion("ctx", "q", output={"type": "array"})
    assert (result.stop_reason, result.parsed) == ("final", [[]])


def test_json_too_deep_for_the_validator_is_an_invalid_answer():
    from rlm_sandbox.output import AnswerInvalid, OutputSpec

    spec = OutputSpec({"type": "array", "items": {"$ref": "#"}})
    with pytest.raises(AnswerInvalid, match="nested too deeply"):
        spec.validate("[" * 900 + "]" * 900, is_json=True)  # a forged frame's final_json
    assert spec.validate("[[], [[]]]", is_json=True) == [[], [[]]]
