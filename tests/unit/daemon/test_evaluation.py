from __future__ import annotations

from daemon.training.evaluation import paired_outcomes
from daemon.training.gate import PairedOutcome
from storage.samples import StoredExample


class TestPairedOutcomes:
    def test_paired_outcomes_counts_lost_and_gained_per_old_label(self) -> None:
        examples = [StoredExample(i, f"t{i}", label) for i, label in enumerate(["a", "a", "a", "b", "b", "new"])]
        production = {0: "a", 1: "a", 2: "b", 3: "b", 4: "a", 5: "a"}
        candidate = {0: "a", 1: "new", 2: "a", 3: "a", 4: "b", 5: "new"}
        assert paired_outcomes(examples, production, candidate, labels=["a", "b"]) == {
            "a": PairedOutcome(n=3, lost=1, gained=1),
            "b": PairedOutcome(n=2, lost=1, gained=1),
        }

    def test_paired_outcomes_ignores_labels_not_asked_for(self) -> None:
        examples = [StoredExample(1, "t", "new")]
        assert paired_outcomes(examples, {1: "x"}, {1: "new"}, labels=["a"]) == {}
