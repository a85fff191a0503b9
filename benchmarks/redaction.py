"""PII redaction cost and false positives on intent texts (``ingest.redact_pii``).

Why this exists: redaction runs on every stored text, so its cost decides whether a team
can turn it on, and a false positive silently deletes words the model should learn from.
One run measures, on CLINC150's texts (``--data`` data_full.json; the bundled 1,200-text
sample when it is not given):

1. texts/s of the redactor with every kind on, single thread, on the texts as they are,
   and on the same texts with a PII value (email, phone, card, IBAN or IP, in turn)
   appended to a share ``--pii-share`` of them and to all of them;
2. the texts it changed among the unmodified ones (false positives: CLINC150 holds no PII);
3. of the appended values, the share replaced (recall on these formats).

Run from the repository root::

    python -m benchmarks.redaction --data ../shared/datasets/clinc150/data_full.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.datasets import DatasetError, all_texts
from daemon.ingest.redaction import Redactor

SAMPLE = Path(__file__).resolve().parents[1] / "daemon" / "data" / "clinc150_sample.jsonl"
#: One value per kind, in the formats people type.
VALUES = {
    "email": ["jane.roe@example.com", "j.smith+bank@mail.example.co.uk"],
    "phone": ["(415) 555-0132", "+44 20 7946 0958", "+49 30 901820", "415-555-0132"],
    "card": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "2221000000000009"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
    "ip": ["192.168.10.20", "fe80::1ff:fe23:4567:890a"],
}


def with_pii(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str | None]]:
    """``texts`` with a value appended to ``share`` of them; the value per text (or None)."""
    rng = random.Random(seed)
    kinds = sorted(VALUES)
    out, inserted = [], []
    for n, text in enumerate(texts):
        if rng.random() < share:
            value = rng.choice(VALUES[kinds[n % len(kinds)]])
            out.append(f"{text} {value}")
            inserted.append(value)
        else:
            out.append(text)
            inserted.append(None)
    return out, inserted


def timed(redactor: Redactor, texts: list[str]) -> tuple[list[str], float]:
    started = time.perf_counter()
    redacted, _ = redactor.redact_all(texts)
    return redacted, len(texts) / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        texts = all_texts(args.data or SAMPLE)
    except DatasetError as exc:
        raise SystemExit(f"error: {exc}") from None
    started = time.perf_counter()
    redactor = Redactor(["email", "phone", "card", "iban", "ip"], phone_regions=args.phone_regions)
    figures: dict[str, Any] = {"texts": len(texts), "build_s": round(time.perf_counter() - started, 2), "sets": {}}
    plain, rate = timed(redactor, texts)
    changed = [t for t, r in zip(texts, plain, strict=True) if t != r]
    figures["false_positives"] = {"texts": len(changed), "rate": len(changed) / len(texts), "examples": changed[:10]}
    figures["sets"]["as is"] = {"texts_per_s": round(rate)}
    for share in (args.pii_share, 1.0):
        mixed, inserted = with_pii(texts, share, args.seed)
        redacted, rate = timed(redactor, mixed)
        carrying = [(value, after) for value, after in zip(inserted, redacted, strict=True) if value is not None]
        caught = sum(value not in after for value, after in carrying)
        figures["sets"][f"{share:.0%} with PII"] = {"texts_per_s": round(rate), "values": len(carrying),
                                                     "recall": round(caught / len(carrying), 4) if carrying else None}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="CLINC150 data_full.json (default: the bundled sample)")
    parser.add_argument("--pii-share", type=float, default=0.1, help="share of texts given a PII value (%(default)s)")
    parser.add_argument("--phone-regions", nargs="+", default=["US", "GB", "DE", "FR", "IN", "CA"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0.0 < args.pii_share <= 1.0:
        parser.error("--pii-share must be in (0, 1]")
    figures = run(args)
    print(f"{figures['texts']:,} texts; redactor built in {figures['build_s']}s")
    for name, measured in figures["sets"].items():
        recall = measured.get("recall")
        print(f"{name:>14}: {measured['texts_per_s']:>8,} texts/s" + ("" if recall is None else
              f"  ({measured['values']:,} values, {recall:.1%} replaced)"))
    fp = figures["false_positives"]
    print(f"false positives: {fp['texts']} of {figures['texts']:,} unmodified texts changed ({fp['rate']:.3%})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
