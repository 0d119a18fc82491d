"""mrcnn.progress: the bar long loops show (a count, the rate, a time
estimate), silent when verbose is 0."""
import re

import pytest

from mrcnn.progress import progress_bar


def _plain(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_counts_items_with_their_unit(capsys):
    bar = progress_bar(3, "frame")
    for _ in range(3):
        bar.add(1)
    out = _plain(capsys.readouterr().out)
    assert re.search(r"3/3 .*/frame", out), out


def test_unknown_total_shows_the_count(capsys):
    bar = progress_bar(None, "frame")
    for count in range(1, 5):
        bar.update(count)
    bar.update(4, finalize=True)   # the loop's end: the last count is shown
    out = _plain(capsys.readouterr().out)
    assert re.search(r"4/Unknown .*/frame", out), out


def test_silent_when_not_verbose(capsys):
    bar = progress_bar(2, "image", verbose=0)
    bar.add(1)
    bar.update(2)
    assert capsys.readouterr().out == ""


def test_negative_total_is_refused():
    with pytest.raises(ValueError, match="total must be >= 0 or None, got -1"):
        progress_bar(-1)
