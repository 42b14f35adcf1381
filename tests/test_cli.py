"""The `rlm-sandbox` command: argument parsing, and each subcommand against real Docker."""

from __future__ import annotations

import pytest

from rlm_sandbox import cli
from rlm_sandbox.cli import build_parser, main


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


# ------------------------------------------------------------------ parsing


def test_image_build_options():
    args = parse("image", "build")
    assert args.handler is cli.cmd_image_build
    assert (args.bootstrap, args.fallback_bootstrap, args.base, args.force) == (False, False, None, False)
    assert parse("image", "build", "--bootstrap").bootstrap
    assert parse("image", "build", "--fallback-bootstrap").fallback_bootstrap
    assert parse("image", "build", "--base", "debian:12").base == "debian:12"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["image"],
        ["image", "build", "--bootstrap", "--base", "debian:12"],
        ["image", "build", "--bootstrap", "--fallback-bootstrap"],
        ["exec"],
        ["exec", "-c", "1", "--runtime", "kata"],
        ["exec", "-c", "1", "--timeout", "soon"],
        ["doctor", "--runtime", "crun"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--help)" in err


def test_subcommand_defaults():
    gc = parse("gc")
    assert gc.handler is cli.cmd_gc and not gc.all
    assert parse("gc", "--all").all
    assert parse("doctor").runtime == "runc"
    exec_ = parse("exec", "-c", "print(1)", "--runtime", "runsc", "--timeout", "2.5")
    assert exec_.handler is cli.cmd_exec
    assert (exec_.code, exec_.runtime, exec_.timeout, exec_.no_sandbox) == ("print(1)", "runsc", 2.5, False)


# ------------------------------------------------------------------ against Docker


def test_image_build_is_a_no_op_when_up_to_date(sandbox_image, capsys):
    assert main(["image", "build"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{sandbox_image}\n"
    assert "up to date" in captured.err


def test_exec_prints_the_code_output(sandbox_image, capsys):
    assert main(["exec", "-c", "print(2 + 2)"]) == 0
    assert capsys.readouterr().out == "4\n"


def test_exec_error_exits_1_with_the_traceback(sandbox_image, capsys):
    assert main(["exec", "-c", "1 / 0"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_exec_has_no_model(sandbox_image, capsys):
    assert main(["exec", "-c", "llm_query('hi')"]) == 1
    assert "no model configured" in capsys.readouterr().err


def test_exec_without_sandbox_warns_loudly(capsys):
    assert main(["exec", "--no-sandbox", "-c", "print('hi')"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hi\n"
    assert "Nothing is isolated" in captured.err


def test_doctor_finds_every_control_in_effect(runtime, capsys):
    assert main(["doctor", "--runtime", runtime]) == 0
    out = capsys.readouterr().out
    assert "all hardening controls in effect" in out
    assert "FAIL" not in out


def test_gc_reports_a_count(docker_client, capsys):
    assert main(["gc"]) == 0
    assert "stale sandbox containers" in capsys.readouterr().out
