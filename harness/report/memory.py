"""The memory report of one server as a table: one row per rank, then the max the gate reads."""

from __future__ import annotations

from harness.memory import MemoryReport, RankMemory

# (title, attribute, format); a column no rank has a figure for is left out.
_COLUMNS = (
    ("rank", "rank", None), ("init dist", "init_dist_gib", "{:.2f}"), ("weights", "weights_gib", "{:.2f}"),
    ("draft", "draft_weights_gib", "{:.2f}"), ("K", "kv_k_gib", "{:.2f}"), ("V", "kv_v_gib", "{:.2f}"),
    ("kv total", "kv_cache_gib", "{:.2f}"), ("kv tokens", "kv_tokens", "{}"), ("graph", "graph_gib", "{:.2f}"),
    ("avail after load", "load_end_avail_gib", "{:.2f}"), ("avail after pool", "pool_end_avail_gib", "{:.2f}"),
    ("peak before load", "peak_before_load_gib", "{:.3f}"), ("load increase", "load_increase_gib", "{:.3f}"),
)


def render_memory(report: MemoryReport) -> str:
    ranks = [report.ranks[label] for label in sorted(report.ranks, key=_rank_order)]
    columns = [c for c in _COLUMNS if c[2] is None or any(getattr(r, c[1]) is not None for r in ranks)]
    rows = [tuple(title for title, _, _ in columns)]
    for rank in ranks:
        rows.append(tuple(
            rank.rank if fmt is None else ("-" if getattr(rank, attr) is None else fmt.format(getattr(rank, attr)))
            for _, attr, fmt in columns
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in rows]
    lines.append("")
    lines.append("GiB, max over ranks: " + (", ".join(f"{k} {v:.3f}" for k, v in report.gated().items()) or "none"))
    lines.extend(_pool_lines(ranks))
    lines.extend(_report_lines(report, ranks))
    return "\n".join(lines) + "\n"


def _pool_lines(ranks: list[RankMemory]) -> list[str]:
    """Each rank's pools when it has more than one (target and draft, or full and SWA)."""
    lines = []
    for rank in ranks:
        if len(rank.kv_pools) > 1 or rank.swa_pool is not None:
            pools = "; ".join(_pool_text(pool) for pool in rank.kv_pools)
            lines.append(f"kv pools {rank.rank}: {pools}")
        if rank.swa_pool is not None:
            swa = rank.swa_pool
            lines.append(f"swa pool {rank.rank}: {swa.mem_usage_gib:.2f} GiB, swa {swa.swa_tokens} tokens, "
                         f"full {swa.full_tokens} tokens")
    return lines


def _pool_text(pool) -> str:
    sizes = f"KV {pool.kv_gib:.2f}" if pool.kv_gib is not None else f"K {pool.k_gib:.2f} + V {pool.v_gib:.2f}"
    return " ".join(part for part in (pool.label, f"{pool.tokens} tokens", sizes) if part)


def _report_lines(report: MemoryReport, ranks: list[RankMemory]) -> list[str]:
    lines = []
    online = {r.online_quant["quantization"]: r.online_quant["layers"] for r in ranks if r.online_quant}
    if online:
        lines.append("online quantization: " + ", ".join(f"{q} {n} layers" for q, n in online.items()))
    profiled = [f"{r.rank} {r.profiled_max_tokens}" for r in ranks if r.profiled_max_tokens is not None]
    if profiled:
        lines.append("profiled max tokens: " + ", ".join(profiled))
    if report.capacity:
        lines.append("capacity: " + ", ".join(f"{k}={v}" for k, v in report.capacity.items()))
    if report.accept_length is not None:
        lines.append(f"last accept len: {report.accept_length}")
    lines.extend(f"missing: {item}" for item in report.missing)
    lines.extend(f"unparsed: {item}" for item in report.unparsed)
    return lines


def _rank_order(label: str) -> tuple[int, ...]:
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in label.split())
