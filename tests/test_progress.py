"""The library's one progress-bar helper: rich, on stderr, silent when disabled."""

from __future__ import annotations

from rankfunnel.progress import progress, track


def test_enabled_bar_draws_on_stderr_only(capsys):
    with progress("counting things", 4, transient=False) as bar:
        bar.advance()
        bar.advance(3)
    out, err = capsys.readouterr()
    assert out == ""
    assert "counting things" in err and "100%" in err


def test_disabled_bar_draws_nothing(capsys):
    with progress("quiet", 2, enabled=False) as bar:
        bar.advance(2)
    assert list(track(range(3), "quiet too", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_track_yields_every_item_and_fills_the_bar(capsys):
    assert list(track(["a", "b", "c"], "letters", transient=False)) == ["a", "b", "c"]
    assert list(track(iter([1, 2]), "no length", transient=False)) == [1, 2]  # unknown total is fine
    err = capsys.readouterr().err
    assert "letters" in err and "100%" in err and "no length" in err
