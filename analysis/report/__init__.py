"""The bring-up report: a self-contained HTML page (memory map, headroom, layout rules, checks) from a
BundleVerdict, and the headroom's few lines for the terminal."""

from analysis.report.headroom import Headroom, headroom, headroom_lines, verdict_headroom
from analysis.report.html import render_report, write_report

__all__ = ["Headroom", "headroom", "headroom_lines", "render_report", "verdict_headroom", "write_report"]
