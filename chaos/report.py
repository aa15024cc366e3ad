"""A chaos run's report: availability figures, report.json and the timeline plot.

`availability` derives, from the clients' events (start, end, kind, outcome; seconds since
the run began), how long no operation completed successfully (gaps over `GAP_S`) and, per
fault, `recovery_s`: the time from the fault's start to the first successful operation that
was invoked after it (stale reads, which any replica serves, are left out). `write_report`
writes `report.json` and `timeline.png`: throughput and latency over time with the fault
windows shaded and the leader at each moment.

Invariants: figures come from the recorded events only; the plot is drawn without a display
(matplotlib's Agg backend).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GAP_S = 1.0  # a stretch this long with no successful operation counts as unavailable
BUCKET_S = 0.5
STALE_KINDS = ("stale-read",)  # served by any replica: they say nothing of availability

Event = tuple[float, float, str, str]


def availability(
    events: Sequence[Event], faults: Sequence[dict[str, Any]], workload: Any
) -> tuple[float, list[float | None]]:
    events = [e for e in events if e[2] not in STALE_KINDS]  # any node answers those
    done = sorted(end for _, end, _, outcome in events if outcome == "ok")
    unavailable = 0.0
    previous = 0.0
    for end in [*done, float(workload.duration_s)]:
        if end - previous > GAP_S:
            unavailable += end - previous
        previous = max(previous, end)
    recoveries: list[float | None] = []
    for fault in faults:
        at = float(fault["at_s"])
        after = [end for start, end, _, outcome in events if outcome == "ok" and start >= at]
        recoveries.append(round(min(after) - at, 3) if after else None)
    return round(unavailable, 3), recoveries


def write_report(
    report: dict[str, Any], events: Sequence[Event], faults: Sequence[dict[str, Any]], out: Path
) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot_timeline(events, faults, report.get("leaders", []), out / "timeline.png",
                  title=f"{report['experiment']} ({report['workload']})")  # fmt: skip


def plot_timeline(
    events: Sequence[Event], faults: Sequence[dict[str, Any]],
    leaders: Sequence[tuple[float, str | None]], path: Path, title: str = "",
) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end_s = max([end for _, end, _, _ in events] + [t for t, _ in leaders] + [1.0])
    buckets = int(end_s / BUCKET_S) + 1
    counts = [0] * buckets
    latencies: list[list[float]] = [[] for _ in range(buckets)]
    for start, end, _, outcome in events:
        if outcome == "ok":
            index = int(end / BUCKET_S)
            counts[index] += 1
            latencies[index].append((end - start) * 1000)
    times = [i * BUCKET_S for i in range(buckets)]
    figure, (ax_rate, ax_latency, ax_leader) = plt.subplots(
        3, 1, sharex=True, figsize=(10, 7), gridspec_kw={"height_ratios": [3, 3, 1]}
    )
    ax_rate.plot(times, [c / BUCKET_S for c in counts], color="tab:blue")
    ax_rate.set_ylabel("ok operations/s")
    p50 = [sorted(v)[len(v) // 2] if v else float("nan") for v in latencies]
    worst = [max(v) if v else float("nan") for v in latencies]
    ax_latency.plot(times, p50, label="p50", color="tab:green")
    ax_latency.plot(times, worst, label="max", color="tab:red", alpha=0.6)
    ax_latency.set_yscale("log")
    ax_latency.set_ylabel("latency (ms)")
    ax_latency.legend(loc="upper right")
    names = sorted({leader or "none" for _, leader in leaders}) or ["none"]
    rows = [names.index(leader or "none") for _, leader in leaders]
    ax_leader.step([t for t, _ in leaders], rows, where="post", color="black")
    ax_leader.set_yticks(range(len(names)), names)
    ax_leader.set_ylabel("leader")
    ax_leader.set_xlabel("seconds since the workload began")
    for fault in faults:
        start = float(fault["at_s"])
        stop = float(fault.get("healed_s", start + BUCKET_S))
        for ax in (ax_rate, ax_latency, ax_leader):
            ax.axvspan(start, stop, color="orange", alpha=0.25)
        ax_rate.annotate(fault["kind"], (start, 0), xytext=(2, 2), textcoords="offset points",
                         fontsize=8, rotation=90, va="bottom")  # fmt: skip
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
