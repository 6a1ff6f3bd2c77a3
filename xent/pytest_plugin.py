"""The pytest plugin (entry point ``xent`` of the group ``pytest11``): the fixture ``xent_audit`` and
the ``--xent-*`` options.

    def test_bce_with_logits_conforms(xent_audit):
        xent_audit(adapter)  # an xent.kernel(...) or any Adapter

runs xent's curated corpus, shared generated cases and per-cell targeted search against the
adapter (``conformance.audit``) and, when it diverges from the oracle, fails the test with each
divergence's verdict, its minimal case (hex-exact) and its standalone reproducer. It returns the
`AuditResult` otherwise. Keyword arguments are ``xent.audit``'s (``variants``, ``dtypes``,
``allow``, ``profile``, ``examples``, ``search``, ``shrink``, ``seed``); the reports go to a fresh
temporary folder per call (pytest's ``tmp_path_factory``), named in the message.

Options, defined once with ``xent run``'s (``conformance.options``): ``--xent-profile
fast|thorough``, ``--xent-examples N``, ``--xent-search S``, ``--xent-shrink K``, ``--xent-seed
SEED``. A test's own budgets apply unless the command line names a profile (whose budgets then
apply) or a budget (which always applies). The profiles are also the hypothesis profiles
``xent-fast`` and ``xent-thorough``, for ``pytest --hypothesis-profile xent-thorough``.

Loading this module imports ``conformance.options`` (the standard library only) and nothing else:
pytest loads it at every start, whatever the session runs.
"""
from __future__ import annotations

import re

import pytest

from conformance import options


def pytest_addoption(parser) -> None:
    options.add_pytest_options(parser)


@pytest.hookimpl(tryfirst=True)  # before hypothesis' own plugin loads the profile it was given
def pytest_configure(config) -> None:
    name = getattr(config.option, "hypothesis_profile", None)
    if isinstance(name, str) and name.startswith("xent-"):
        options.register_hypothesis_profiles()


@pytest.fixture
def xent_audit(request, tmp_path_factory):
    """``xent_audit(adapter, **audit_options)``: audit ``adapter``; fail the test with the account
    of every divergence, or return the `AuditResult`."""
    command_line = {o.name: request.config.getoption(f"{options.PYTEST_PREFIX}_{o.name}") for o in options.OPTIONS}

    def run(adapter, **kwargs):
        from conformance.audit import audit

        if kwargs.get("out") is None:
            kwargs["out"] = tmp_path_factory.mktemp("xent-" + re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:40])
        result = audit(adapter, command_line=command_line, raise_on_failure=False, **kwargs)
        if not result.ok:
            pytest.fail(result.message(), pytrace=False)
        return result

    return run
