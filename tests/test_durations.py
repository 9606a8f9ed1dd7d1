import pytest

from mm4watch.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        ("45s", 45),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("1d", 86400),
        (90, 90),
        (2.5, 2.5),
        (" 2H ", 7200),
    ],
)
def test_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "10 parsecs", "-5m", "0", 0, True, None, [1], "5x"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format():
    assert format_duration(None) == ""
    assert format_duration(3.25) == "3.2s"
    assert format_duration(125) == "2m05s"
    assert format_duration(7260) == "2h01m"
