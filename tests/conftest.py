"""Hypothesis profiles: "fast" (the default) and "thorough", chosen by XENT_HYPOTHESIS_PROFILE.

An unknown profile name stops the run with one line naming the variable and its value (pytest's
usage error, exit status 4), not a traceback from inside hypothesis.
"""
import os

import pytest
from hypothesis import settings

PROFILES = {"fast": 20, "thorough": 500}  # name -> max_examples
for _name, _n in PROFILES.items():
    settings.register_profile(_name, max_examples=_n, deadline=None)
PROFILE = os.environ.get("XENT_HYPOTHESIS_PROFILE", "").strip() or "fast"
if PROFILE in PROFILES:
    settings.load_profile(PROFILE)


def pytest_configure(config):
    if PROFILE not in PROFILES:
        raise pytest.UsageError(f"XENT_HYPOTHESIS_PROFILE={PROFILE!r} is not a hypothesis profile of this suite; "
                                f"expected one of {', '.join(PROFILES)}")
