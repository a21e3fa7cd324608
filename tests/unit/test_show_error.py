"""show_error: a chapter shows the message of an expected error and goes on."""

import pytest

from metarec_ref.book import show_error
from metarec_ref.data import load_events


def fail(kind, message):
    raise kind(message)


def test_prints_type_and_message_and_returns_the_error(capsys):
    err = show_error(fail, ValueError, "column 'user_id' is missing")
    assert isinstance(err, ValueError)
    assert capsys.readouterr().out == "ValueError: column 'user_id' is missing\n"


def test_keyword_arguments_reach_the_call(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("user_id\titem_id\ttimestamp\n1\tA\t2024-01-01\n")
    err = show_error(load_events, path, sep=",")
    assert isinstance(err, ValueError)
    assert "looks tab-separated: pass sep='\\t'" in capsys.readouterr().out


@pytest.mark.parametrize("kind", [FileNotFoundError, IsADirectoryError, TypeError, KeyError, ImportError])
def test_other_expected_errors_are_shown(kind, capsys):
    assert isinstance(show_error(fail, kind, "why"), kind)
    assert capsys.readouterr().out == f"{kind.__name__}: why\n"


def test_a_call_that_succeeds_is_an_assertion_error():
    with pytest.raises(AssertionError, match="expected an error from len"):
        show_error(len, [1, 2])


def test_unexpected_errors_propagate():
    with pytest.raises(RuntimeError, match="a bug"):
        show_error(fail, RuntimeError, "a bug")


def test_expect_names_the_error_a_chapter_demonstrates(capsys):
    err = show_error(fail, AttributeError, "'Model' object has no attribute 'clone'", expect=AttributeError)
    assert isinstance(err, AttributeError)
    assert capsys.readouterr().out == "AttributeError: 'Model' object has no attribute 'clone'\n"


def test_expect_narrows_what_is_shown():
    with pytest.raises(ValueError, match="not the demonstrated error"):
        show_error(fail, ValueError, "not the demonstrated error", expect=AttributeError)
