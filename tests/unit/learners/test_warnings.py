"""Third-party warnings a user cannot act on stay out of the logs; others still show."""

from __future__ import annotations


def test_the_qpsolvers_warning_a_user_cannot_act_on_is_silenced() -> None:
    import subprocess
    import sys

    code = ("import warnings, learners; "
            "warnings.warn('no QP solver found on your system, you can install solvers from PyPI'); "
            "warnings.warn('a warning that still shows')")
    result = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "no QP solver found" not in result.stderr
    assert "a warning that still shows" in result.stderr
