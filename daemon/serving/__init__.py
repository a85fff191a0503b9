"""Serving: the hot-swapped production model behind ``/v1/predict`` and the promotion events."""
