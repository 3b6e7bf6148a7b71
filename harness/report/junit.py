"""junit.xml: one test case per cell and metric, so CI shows each gate as a test."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import overload

from harness.compare import Verdict
from harness.report.format import figure
from harness.results import RunResult

# Characters XML 1.0 cannot hold at all (a server's ANSI colour codes, NULs): ElementTree would write them
# and every JUnit reader would then refuse the file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@overload
def xml_text(value: str) -> str: ...
@overload
def xml_text(value: None) -> None: ...
def xml_text(value: str | None) -> str | None:
    return None if value is None else _NOT_XML.sub("\ufffd", value)


def render_junit(run: RunResult, verdicts: list[Verdict]) -> str:
    kinds = [v.meaning.junit for v in verdicts]  # a canary's caught defect is a pass
    suite = ET.Element("testsuite", {
        "name": f"harness.{run.suite}",
        "tests": str(len(verdicts)),
        "failures": str(kinds.count("failure")),
        "errors": str(kinds.count("error")),
        "skipped": str(kinds.count("skipped")),
    })
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "run_id", "value": xml_text(run.run_id)})
    logs = {c.cell_id: c.error.log_tail for c in run.cells if c.error is not None}
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", {"classname": xml_text(f"{run.suite}.{v.cell_id}"),
                                                 "name": xml_text(v.metric)})
        message = xml_text(f"{v.state.value}: value {figure(v.metric, v.value)}, baseline "
                           f"{figure(v.metric, v.baseline)}; {v.reason}")
        kind = v.meaning.junit
        if kind == "failure":
            ET.SubElement(case, "failure", {"type": v.state.value, "message": message}).text = xml_text(v.reason)
        elif kind == "error":
            ET.SubElement(case, "error", {"type": v.state.value, "message": message}).text = xml_text(
                logs.get(v.cell_id) or v.reason)
        elif kind == "skipped":
            ET.SubElement(case, "skipped", {"message": message})
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
