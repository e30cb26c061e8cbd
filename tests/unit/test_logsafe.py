import logging

from strom.logsafe import LogLimiter, printable


def test_printable_escapes_line_breaks_and_control_codes():
    assert printable("plain text") == "plain text"
    assert printable("a\nb\x1b[31m\u2028") == "a\\nb\\x1b[31m\\u2028"


def test_the_limiter_lets_a_burst_through_then_counts_the_rest(caplog):
    limiter = LogLimiter(logging.getLogger("strom.test"), per_second=5)
    with caplog.at_level(logging.WARNING, logger="strom.test"):
        for i in range(1000):
            limiter.log(logging.WARNING, "refused %d", i)
    assert 5 <= len(caplog.records) <= 7  # the burst, and what refilled meanwhile
    assert limiter.suppressed >= 990
    limiter._last -= 1.0  # a second later
    with caplog.at_level(logging.WARNING, logger="strom.test"):
        limiter.log(logging.WARNING, "refused again")
    assert caplog.records[-1].getMessage().startswith("refused again (")
    assert "similar lines suppressed" in caplog.records[-1].getMessage()
    assert limiter.suppressed == 0
