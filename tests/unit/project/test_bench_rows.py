"""bench/run_all.py reads the benchmarks' reports: logs (lines/s, instructions), logs_memory (flatness)."""

from __future__ import annotations

import pytest

from bench.run_all import logs_memory_rows, logs_rows

REPORT = """\
mtail --one_shot (regex program)                     100,000         120,000            1.00            1.00
sidecar file source, metrics only                    300,000         372,000            3.00            3.10
sidecar file source, metrics + correlation           180,000         216,000            1.80            1.80
callgrind, pipeline alone, instructions per line: 23,393 metrics only, 29,780 with correlation, 34,352 with 10 rules
"""


def test_lines_per_second_rows_judge_the_wall_ratio_against_each_goal() -> None:
    rows = logs_rows("logs.py", REPORT)
    off, on = rows[0], rows[1]
    assert (off.value, off.anchor, off.ratio, off.met) == ("300,000", "100,000", 3.0, True)
    assert (on.value, on.ratio, on.goal, on.met) == ("180,000", 1.8, ">= 2.0", False)


def test_instruction_rows_appear_only_when_the_report_has_them() -> None:
    without = REPORT.rsplit("callgrind", 1)[0]
    assert len(logs_rows("logs.py", without)) == 2


def test_instruction_rows_without_mtails_count_are_shown_but_not_judged() -> None:
    counted = logs_rows("logs.py", REPORT)[2:]
    assert [(r.figure, r.value, r.anchor, r.ratio, r.met) for r in counted] == [
        ("log instructions/line, correlation off, vs mtail", "23,393", "?", None, None),
        ("log instructions/line, correlation on, vs mtail", "29,780", "?", None, None),
    ]


def test_instruction_rows_are_judged_against_mtails_count_from_the_same_run() -> None:
    report = REPORT + (
        "callgrind, mtail --one_shot, instructions per line: 70,179 program, 154,045 program + 10 metrics\n"
    )
    off, on = logs_rows("logs.py", report)[2:]
    assert (off.anchor, off.goal, off.met) == ("70,179", ">= 3.0x fewer", True)
    assert off.ratio == pytest.approx(70_179 / 23_393)
    # 70,179 / 29,780 = 2.36: on needs 2x fewer, so met; with a costlier pipeline it is not
    assert (on.anchor, on.goal, on.met) == ("70,179", ">= 2.0x fewer", True)
    dearer = report.replace("29,780 with correlation", "36,000 with correlation")
    assert logs_rows("logs.py", dearer)[3].met is False


MEMORY_REPORT = """\
before any line: RSS 52.1 MiB
  250,000 lines  RSS   107.6 MiB  series    192  export queue  5,540
2,000,000 lines  RSS   {last} MiB  series    192  export queue  8,712
"""


def test_log_memory_is_judged_by_growth_after_the_first_step() -> None:
    rise, flat = logs_memory_rows("logs_memory.py", MEMORY_REPORT.format(last="111.5"))
    assert (rise.value, rise.anchor, rise.met) == ("107.6", "52.1", None)
    assert (flat.value, flat.met) == ("+3.9 MiB", True)
    _, growing = logs_memory_rows("logs_memory.py", MEMORY_REPORT.format(last="130.0"))
    assert (growing.value, growing.met) == ("+22.4 MiB", False)


def test_log_memory_needs_two_steps() -> None:
    with pytest.raises(LookupError):
        logs_memory_rows("logs_memory.py", MEMORY_REPORT.format(last="1").rsplit("2,000,000", 1)[0])
