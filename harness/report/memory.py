"""The memory report of one server as a table: one row per rank, then the max the gate reads."""

from __future__ import annotations

from harness.memory import MemoryReport

_COLUMNS = (
    ("rank", "rank", None), ("weights", "weights_gib", "{:.2f}"), ("draft", "draft_weights_gib", "{:.2f}"),
    ("kv cache", "kv_cache_gib", "{:.2f}"), ("kv tokens", "kv_tokens", "{}"), ("graph", "graph_gib", "{:.2f}"),
    ("avail after load", "load_end_avail_gib", "{:.2f}"), ("peak before load", "peak_before_load_gib", "{:.3f}"),
    ("load increase", "load_increase_gib", "{:.3f}"),
)


def render_memory(report: MemoryReport) -> str:
    rows = [tuple(title for title, _, _ in _COLUMNS)]
    for label in sorted(report.ranks, key=_rank_order):
        rank = report.ranks[label]
        rows.append(tuple(
            label if fmt is None else ("-" if getattr(rank, attr) is None else fmt.format(getattr(rank, attr)))
            for _, attr, fmt in _COLUMNS
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in rows]
    lines.append("")
    lines.append("GiB, max over ranks: " + (", ".join(f"{k} {v:.3f}" for k, v in report.gated().items()) or "none"))
    online = {r.online_quant["quantization"]: r.online_quant["layers"] for r in report.ranks.values() if r.online_quant}
    if online:
        lines.append("online quantization: " + ", ".join(f"{q} {n} layers" for q, n in online.items()))
    if report.capacity:
        lines.append("capacity: " + ", ".join(f"{k}={v}" for k, v in report.capacity.items()))
    if report.accept_length is not None:
        lines.append(f"last accept len: {report.accept_length}")
    for item in report.missing:
        lines.append(f"missing: {item}")
    for item in report.unparsed:
        lines.append(f"unparsed: {item}")
    return "\n".join(lines) + "\n"


def _rank_order(label: str) -> tuple[int, ...]:
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in label.split())
