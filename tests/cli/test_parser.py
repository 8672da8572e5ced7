"""The command line's own conventions: -v anywhere, defaults shown in --help."""

import argparse

import pytest

from lowbit.cli.main import build_parser, main


def test_verbose_goes_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["-v", "bench", "m.onnx"]).verbose
    assert parser.parse_args(["bench", "m.onnx", "-v"]).verbose
    assert not parser.parse_args(["bench", "m.onnx"]).verbose


def test_every_option_with_a_default_shows_it(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for action in command._actions:
            default = getattr(action.default, "value", action.default)
            if (action.option_strings and default not in (None, False, True, argparse.SUPPRESS)
                    and action.dest != "help" and action.help != argparse.SUPPRESS):
                assert f"{action.option_strings[-1]}" in text
                assert "default" in (action.help or "") or f"(default: {action.default})" \
                    in text, (name, action.option_strings)
