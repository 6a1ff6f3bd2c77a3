"""Hypothesis profiles: "fast" (the default) and "thorough", chosen by XENT_HYPOTHESIS_PROFILE.

The profiles are xent's own (``conformance.options.PROFILES``: ``xent run --profile`` and
``pytest --xent-profile`` select the same names), registered with hypothesis as ``xent-fast`` and
``xent-thorough``; here they set ``max_examples`` of the suite's property tests. An unknown profile
name stops the run with one line naming the variable and its value (pytest's usage error, exit
status 4), not a traceback from inside hypothesis.
"""
import os

import pytest
from hypothesis import settings

from conformance.options import PROFILES, register_hypothesis_profiles

register_hypothesis_profiles()
PROFILE = os.environ.get("XENT_HYPOTHESIS_PROFILE", "").strip() or "fast"
if PROFILE in PROFILES:
    settings.load_profile(f"xent-{PROFILE}")


def pytest_configure(config):
    if PROFILE not in PROFILES:
        raise pytest.UsageError(f"XENT_HYPOTHESIS_PROFILE={PROFILE!r} is not a hypothesis profile of this suite; "
                                f"expected one of {', '.join(PROFILES)}")
