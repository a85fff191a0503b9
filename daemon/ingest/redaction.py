"""PII redaction before a text is stored, trained on or logged (``ingest.redact_pii``).

Detection is Microsoft Presidio's analyzer with only its pattern recognizers (email,
phone via ``phonenumbers``, Luhn-checked payment cards, mod-97-checked IBANs, IPv4/IPv6
addresses) and no NLP model: no spaCy pipeline to download, no network. It was chosen over
scrubadub and a hand-written regex set on measured precision (benchmarks/README.md,
"PII redaction"): zero hits on CLINC150's 23,700 texts and on 600 texts with
dates, prices, versions and "meet me at home"-style distractors, 19 of 20 hand-written
cases in formats the test generator never produced; scrubadub has no IBAN or IP detector,
found 30% of cards and read " at " as "@". Two deviations from Presidio's defaults,
both fixing measured faults:

- the email recognizer's domain check uses ``tldextract`` with its bundled suffix list
  only (Presidio's default fetches the list from the internet on first use, which hangs
  on a network that drops packets);
- the card pattern also accepts 2-series Mastercard numbers (2221-2720), which Presidio's
  pattern misses.

Cost: Presidio runs at one to a few thousand texts per second per core, so each
recognizer runs only on texts it could match (``_may_hold``: an email needs ``@``, a
phone number at least 4 digits, a card 12, an IBAN a country code and check digits, an
IP address ``:`` or four dotted numbers); a text that fails all of them — most
natural-language texts — skips Presidio. The conditions are necessary ones, so they cost
no recall.

Spans are replaced right to left by a typed placeholder (``<EMAIL>``, ``<PHONE>``,
``<CARD>``, ``<IBAN>``, ``<IP>``); where detections overlap (Presidio's phone matcher
also fires on digit runs inside card numbers and IBANs) the higher-scored, then longer,
span wins.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PLACEHOLDERS", "Redacted", "Redactor"]

logger = logging.getLogger(__name__)
# Presidio logs at INFO on every call without an NLP model ("Skipping context extraction").
logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)

#: Our entity names -> (Presidio's entity, placeholder).
_ENTITIES: dict[str, tuple[str, str]] = {
    "email": ("EMAIL_ADDRESS", "<EMAIL>"),
    "phone": ("PHONE_NUMBER", "<PHONE>"),
    "card": ("CREDIT_CARD", "<CARD>"),
    "iban": ("IBAN_CODE", "<IBAN>"),
    "ip": ("IP_ADDRESS", "<IP>"),
}
PLACEHOLDERS: dict[str, str] = {name: placeholder for name, (_, placeholder) in _ENTITIES.items()}

#: A text without any of these characters holds none of the entities (see the module doc).
_MAY_HOLD_PII = re.compile(r"[0-9@:]")
_DIGIT = re.compile(r"[0-9]")
_IPV4_SHAPE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IBAN_START = re.compile(r"[A-Za-z]{2}[0-9]{2}")


def _may_hold(entity: str, text: str, digits: int) -> bool:
    """A necessary condition for Presidio's recognizer of ``entity`` to match ``text``: the
    ones that cannot match are not run. Phones: no number valid in any region has fewer than
    4 digits (checked over phonenumbers' metadata for 20 regions); cards 12 digits (the
    shortest pattern); IBANs a country code and 2 check digits then at least 8 more."""
    if entity == "email":
        return "@" in text
    if entity == "phone":
        return digits >= 4
    if entity == "card":
        return digits >= 12
    if entity == "iban":
        return digits >= 2 and _IBAN_START.search(text) is not None
    return ":" in text or _IPV4_SHAPE.search(text) is not None  # ip

#: Presidio's card pattern with the 2-series Mastercard range (2221-2720) added.
_CARD_PATTERN = (r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(2[2-7]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))"
                 r"[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b")


@dataclass
class Redacted:
    """A text after redaction and what was replaced in it, by entity name."""

    text: str
    found: Counter[str] = field(default_factory=Counter)


class Redactor:
    """Replaces the configured kinds of PII in texts; build once (about 2 s), then reuse.

    Thread-safe: Presidio's analyzer keeps no per-call state.
    """

    def __init__(self, entities: Sequence[str], *, phone_regions: Sequence[str] = ("US",)) -> None:
        unknown = sorted(set(entities) - set(_ENTITIES))
        if unknown:
            raise ValueError(f"unknown PII entity {unknown[0]!r}; choose from {sorted(_ENTITIES)}")
        if not entities:
            raise ValueError("a Redactor needs at least one entity kind")
        self.entities = tuple(dict.fromkeys(entities))
        self._by_presidio = {_ENTITIES[name][0]: name for name in self.entities}
        started = time.perf_counter()
        self._analyzer = _build_analyzer(self.entities, phone_regions)
        logger.info("PII redaction of %s ready in %.1fs", ", ".join(self.entities), time.perf_counter() - started)

    def redact(self, text: str) -> Redacted:
        """``text`` with every configured entity replaced by its placeholder."""
        if not _MAY_HOLD_PII.search(text):
            return Redacted(text)
        digits = len(_DIGIT.findall(text))
        wanted = [_ENTITIES[name][0] for name in self.entities if _may_hold(name, text, digits)]
        if not wanted:
            return Redacted(text)
        results = self._analyzer.analyze(text=text, language="en", entities=wanted)
        if not results:
            return Redacted(text)
        chosen: list[Any] = []
        for result in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
            if all(result.end <= other.start or result.start >= other.end for other in chosen):
                chosen.append(result)
        found: Counter[str] = Counter()
        for result in sorted(chosen, key=lambda r: r.start, reverse=True):
            name = self._by_presidio[result.entity_type]
            text = text[:result.start] + PLACEHOLDERS[name] + text[result.end:]
            found[name] += 1
        return Redacted(text, found)

    def redact_all(self, texts: Sequence[str]) -> tuple[list[str], Counter[str]]:
        """Each of ``texts`` redacted, and the total replaced by entity name."""
        total: Counter[str] = Counter()
        out = []
        for text in texts:
            redacted = self.redact(text)
            out.append(redacted.text)
            total.update(redacted.found)
        return out, total


def _build_analyzer(entities: Sequence[str], phone_regions: Sequence[str]) -> Any:
    # Imported here: Presidio (and spaCy under it) costs ~2 s of import, paid only when on.
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
        """Presidio's, with the domain checked against the bundled public-suffix list only."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline(pattern_text).fqdn)

    makers = {
        "email": OfflineEmailRecognizer,
        "phone": lambda: PhoneRecognizer(supported_regions=tuple(phone_regions)),
        "card": lambda: CreditCardRecognizer(patterns=[Pattern("cards incl. 2-series Mastercard", _CARD_PATTERN, 0.3)]),
        "iban": IbanRecognizer,
        "ip": IpRecognizer,
    }
    registry = RecognizerRegistry(supported_languages=["en"])
    for name in entities:
        registry.add_recognizer(makers[name]())
    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "noop"}])
    nlp.load()
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
