"""Hypothesis profiles: "fast" (the default) and "thorough", chosen by XENT_HYPOTHESIS_PROFILE."""
import os

from hypothesis import settings

settings.register_profile("fast", max_examples=20, deadline=None)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("XENT_HYPOTHESIS_PROFILE", "fast"))
