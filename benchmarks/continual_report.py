"""The report of ``lifelong bench continual``: JSON, a markdown table, and a PNG with one line per strategy.

Kept apart from the experiment so the report can be rebuilt from a saved JSON
(``python -m benchmarks.continual_report continual.json``) without rerunning anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["markdown", "write_report"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    config, daemon = report["config"], report["daemon"]
    baselines = report.get("baselines") or {}
    staged = [name for name in ("naive", "replay") if name in baselines]
    head = ["stage", "labels", f"{config['strategy']} (daemon)", "new labels", "forgetting", "decision",
            "buffer", "seconds", *staged]
    lines = [
        f"# lifelong bench continual: {config['tasks']} stages, {config['labels']} labels",
        "",
        f"Dataset `{config['dataset']}`, label order seed {config['seed']}, strategy `{config['strategy']}`, "
        f"base model {config['base_model']}, buffer {_budget(config['buffer'])}. "
        f"Machine: {config['machine']['cpus']} CPUs, {config['machine']['platform']}. Accuracy in % on the test "
        "texts of every label seen so far, scored through `/v1/predict`.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, row in enumerate(daemon["stages"]):
        cells = [str(row["stage"]), str(row["labels"]), _pct(row["accuracy"]), _pct(row["new_labels_recall"]),
                 _pct(row.get("forgetting")), row["decision"] or "-", str(row.get("buffer_size") or "-"),
                 f"{row['seconds']['total']:.0f}"]
        cells += [_pct(baselines[name]["stages"][i]["accuracy"]) for name in staged]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| | final | average incremental |", "|---|---|---|",
              f"| {config['strategy']} through the daemon | {_pct(daemon['final'])} | {_pct(daemon['average'])} |"]
    for name in staged:
        lines.append(f"| {name} (in-process baseline) | {_pct(baselines[name]['final'])} "
                     f"| {_pct(baselines[name]['average'])} |")
    if "joint" in baselines:
        lines.append(f"| joint (upper bound) | {_pct(baselines['joint']['accuracy'])} | |")
    missing = [name for name in config.get("baselines", []) if name not in baselines]
    if missing:
        lines.append(f"| not finished yet | {', '.join(missing)} | |")
    lines += ["", f"Promoted {daemon['promoted']} of {len(daemon['stages'])} candidates; every stage's new labels "
              f"served: {'yes' if daemon['all_new_labels_served'] else 'no'}. Daemon run {daemon['wall_s']:.0f} s"
              + (f", whole benchmark {report['wall_s']:.0f} s." if "wall_s" in report else ".")]
    rejected = [row for row in daemon["stages"] if row["decision"] != "promoted"]
    for row in rejected:
        failed = [c["detail"] for c in row.get("checks") or [] if not c.get("passed")]
        lines.append(f"- stage {row['stage']}: {row['decision']}: {'; '.join(failed) or row.get('decision_reason')}")
    freshness = report.get("freshness")
    if freshness:
        lines += ["", "Freshness (a fresh daemon, volume trigger, no retrain asked for): "
                  + "; ".join(f"stage {r['stage']} " + (f"{r['seconds']:.0f} s" if r["seconds"] is not None
                                                         else "not served")
                              for r in freshness["stages"])
                  + f" from its last record produced to a served model with >= "
                    f"{100 * freshness['stages'][0].get('recall_needed', 0.8):.0f}% recall on its labels "
                    f"(volume threshold {freshness['stages'][0]['volume_threshold']}; target <= "
                    f"{freshness['target_s']:.0f} s: {'met' if freshness['met'] else 'missed'})."]
    oos = daemon.get("out_of_scope")
    if oos:
        lines += ["", f"Out of scope (final model, {oos['oos_texts']} out-of-scope and {oos['in_scope_texts']} in-scope "
                      f"test texts; {oos['oos_trained_as']} out-of-scope records streamed): out-of-scope recall "
                      f"(abstained) {_pct(oos['oos_recall'])}, in-scope abstained {_pct(oos['in_scope_abstained'])}, "
                      f"in-scope accuracy when answered {_pct(oos['in_scope_answered_accuracy'])}, AUROC of the "
                      f"served confidence {oos['auroc']:.3f}."]
    lines += ["", f"Reproduce: `{config['command']}`"]
    return "\n".join(lines) + "\n"


def _budget(buffer: dict[str, Any]) -> str:
    if buffer.get("size") is not None:
        return f"{buffer['size']} samples"
    bounds = f", min {buffer.get('min_size')}" if buffer.get("min_size") else ""
    return f"{100 * buffer['fraction']:g}% of the samples seen{bounds}"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, daemon = report["config"], report["daemon"]
    baselines = report.get("baselines") or {}
    stages = [row["stage"] for row in daemon["stages"]]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(stages, [r["accuracy"] for r in daemon["stages"]], marker="o",
              label=f"{config['strategy']} (daemon, served model)")
    for name in ("naive", "replay"):
        if name in baselines:
            axis.plot(stages, [r["accuracy"] for r in baselines[name]["stages"]], marker=".", linestyle="--",
                      label=name)
    if "joint" in baselines:
        axis.axhline(baselines["joint"]["accuracy"], color="grey", linestyle=":", label="joint (upper bound)")
    rejected = [r["stage"] for r in daemon["stages"] if r["decision"] != "promoted"]
    if rejected:
        axis.scatter(rejected, [daemon["stages"][s - 1]["accuracy"] for s in rejected], marker="x", color="red",
                     zorder=3, label="candidate not promoted")
    axis.set_xticks(stages)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("stage")
    axis.set_ylabel("accuracy on all labels seen")
    axis.set_title(f"class-incremental, {config['tasks']} stages, {config['labels']} labels")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """``continual.json``, ``continual.md`` and ``continual.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "continual.json", out / "continual.md", out / "continual.png"]
    paths[0].write_text(json.dumps(report, indent=1), encoding="utf-8")
    paths[1].write_text(markdown(report), encoding="utf-8")
    chart(report, paths[2])
    return paths


if __name__ == "__main__":
    saved = Path(sys.argv[1])
    print("\n".join(str(p) for p in write_report(json.loads(saved.read_text(encoding="utf-8")), saved.parent)))
