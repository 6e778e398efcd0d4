"""Progress of long commands: a bar on a terminal, plain lines now and then otherwise."""

from __future__ import annotations

import io

from interfaces.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_plain_line_every_period_and_nothing_in_between() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("rebuilding", 1000, stream=out, every=10, clock=clock)

    for second in range(1, 26):
        clock.now = float(second)
        progress.update(second * 20)
    progress.finish()

    assert out.getvalue().splitlines() == [
        "rebuilding: 200 of 1,000 events (20%), 20/s, about 40 s left",
        "rebuilding: 400 of 1,000 events (40%), 20/s, about 30 s left",
    ]


def test_a_terminal_gets_one_bar_redrawn_in_place_and_ended_with_a_newline() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("importing", 100, stream=out, clock=clock)

    clock.now = 1.0
    progress.update(50)
    clock.now = 2.0
    progress.update(100)
    progress.finish()

    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[############............] importing: 50 of 100 events (50%)" in text
    assert "importing: 100 of 100 events (100%), 50/s" in text


def test_a_total_learnt_later_is_used() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(
        "verifying jobs", 0, unit="log positions", stream=out, every=1, clock=clock
    )

    clock.now = 2.0
    progress.update(300, 600)

    assert out.getvalue() == (
        "verifying jobs: 300 of 600 log positions (50%), 150/s, about 2 s left\n"
    )


def test_a_short_run_on_a_terminal_leaves_nothing_behind() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("rebuilding", 10, stream=out, clock=clock)

    clock.now = 0.05
    progress.update(10)
    progress.finish()

    assert out.getvalue() == ""
