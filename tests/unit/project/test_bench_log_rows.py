"""bench/run_all.py reads bench/logs.py's report: lines/s against mtail and, with --callgrind, instructions."""

from __future__ import annotations

from bench.run_all import logs_rows

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
    counted = logs_rows("logs.py", REPORT)[2:]
    assert [(r.figure, r.value, r.met) for r in counted] == [
        ("log instructions/line, correlation off", "23,393", None),
        ("log instructions/line, correlation on", "29,780", None),
    ]
    without = REPORT.rsplit("callgrind", 1)[0]
    assert len(logs_rows("logs.py", without)) == 2
