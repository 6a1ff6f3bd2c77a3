"""The hypothesis strategies: deterministic generation, every regime for every variant it applies
to, values exactly representable in the case dtype, cases in the domain except where invalid on
purpose, and each regime producing what its name says."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import DTYPES, VARIANTS, Case, fmt
from cases import values as v
from cases.corpus import load_corpus
from cases.strategies import (REGIMES, accidental_hits, cases_for, generate, ignored_targets, masked_rows,
                              regime_cases, regimes_for, sample_cases, zero_weights)

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [(r, name) for name in VARIANTS for r in regimes_for(name)]


def regimes_variants(regime: str) -> list[str]:
    return [name for r, name in PAIRS if r == regime]


def out_of_domain(case: Case) -> str | None:
    """The first input or option outside the variant's domain (docs/variants.md), or None."""
    x, opts = case.inputs, case.options
    with np.errstate(invalid="ignore"):  # casting a signalling NaN warns
        wide = {k: a.astype(np.float64) for k, a in x.items() if a.dtype.kind not in "iu"}
    if not 0 <= opts.get("label_smoothing", 0.0) <= 1:
        return "label_smoothing"
    if case.variant in ("sampled_softmax", "nce"):
        n_classes = x["embeddings"].shape[0]
        for k in ("labels", "sampled"):
            if np.any((x[k] < 0) | (x[k] >= n_classes)):
                return k
        for k in ("true_expected_count", "sampled_expected_count"):
            if not np.all(wide[k] > 0):
                return k
        for k in ("inputs", "embeddings", "biases"):
            if np.any(np.isnan(wide[k])):
                return k
        return None
    for k in ("probs", "labels"):
        if k in wide and not np.all((wide[k] >= 0) & (wide[k] <= 1)):
            return k
    for k in ("weights", "class_weights", "pos_weight"):
        if k in wide and not np.all(wide[k] >= 0):
            return k
    if case.variant == "softmax_ce_sparse":
        labels, n_classes = x["labels"], x["logits"].shape[case.class_axis]
        if not np.all(((labels >= 0) & (labels < n_classes)) | (labels == opts["ignore_index"])):
            return "labels"
    return None


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def any_dtype(strategy_of_dtype):
    return st.sampled_from(DTYPES).flatmap(strategy_of_dtype)


# -- generate() ----------------------------------------------------------------------------------------

def test_generate_is_deterministic_per_seed():
    first = generate("softmax_ce_sparse", "float16", 15, seed=5)
    again = generate("softmax_ce_sparse", "float16", 15, seed=5)
    other = generate("softmax_ce_sparse", "float16", 15, seed=6)
    assert [(c.case_id, c.note) for c in first] == [(c.case_id, c.note) for c in again]
    assert [c.case_id for c in first] != [c.case_id for c in other]
    assert len({c.case_id for c in first}) == len(first) > 5


def test_generate_is_deterministic_across_processes():
    code = ("from cases.strategies import generate; "
            "print(' '.join(c.case_id for c in generate('nce', 'bfloat16', 15, seed=3)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [c.case_id for c in generate("nce", "bfloat16", 15, seed=3)]


def test_generate_draws_the_fresh_process_cases_after_an_ordinary_given_test():
    """An ordinary @given test (hypothesis' default provider) over the same strategy fills
    hypothesis' process-wide cache of constants with the local constants of every imported module
    of this project; generate() must not read them back."""
    code = ("from cases.strategies import generate; "
            "print(' '.join(c.case_id for c in generate('sigmoid_bce_logits', 'float32', 40, seed=11)))")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    @settings(max_examples=60, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases_for("sigmoid_bce_logits", "float32"))
    def ordinary(case):
        pass

    ordinary()
    assert [c.case_id for c in generate("sigmoid_bce_logits", "float32", 40, seed=11)] == fresh.stdout.split()


def test_generate_rejects_unknown_names():
    with pytest.raises(ValueError):
        generate("softmax_ce_fancy", "float32", 1, seed=0)
    with pytest.raises(ValueError):
        generate("softmax", "float8", 1, seed=0)


# -- regimes --------------------------------------------------------------------------------------------

def test_every_regime_applies_to_some_variant_and_every_variant_has_regimes():
    assert {r for r, _ in PAIRS} == set(REGIMES)
    for name in VARIANTS:
        assert "ordinary" in regimes_for(name) and len(regimes_for(name)) >= 4


def test_regime_cases_refuses_a_regime_that_does_not_apply():
    with pytest.raises(ValueError):
        regime_cases("ignored_targets", "softmax", "float32")


@pytest.mark.parametrize("regime, variant", PAIRS, ids=[f"{r}-{name}" for r, name in PAIRS])
def test_regime_produces_cases_of_every_variant_it_applies_to(regime, variant):
    n = max(4, settings.default.max_examples // 5)
    cases = sample_cases(any_dtype(lambda d: regime_cases(regime, variant, d)), n, seed=0)
    assert cases
    for case in cases:
        assert (case.variant, case.note) == (variant, f"regime:{regime}")
        reason = out_of_domain(case)
        if regime == "invalid_labels":
            assert reason is not None, case.to_json()
        else:
            assert reason is None, f"{reason}: {case.to_json()}"


@pytest.fixture(scope="module")
def generated() -> dict[tuple[str, str], list[Case]]:
    """A few cases of every variant and dtype from the regime mixture."""
    n = max(8, settings.default.max_examples // 2)
    return {(name, dtype): generate(name, dtype, n, seed=1) for name in VARIANTS for dtype in DTYPES}


def test_generated_cases_are_exact_in_their_dtype_and_round_trip_through_json(generated):
    for (name, dtype), cases in generated.items():
        f = fmt(dtype)
        assert cases
        for case in cases:
            assert (case.variant, case.dtype) == (name, dtype)
            for key, arr in case.inputs.items():
                assert arr.dtype == (np.int64 if case.spec.input(key).kind == "int" else f.np_dtype)
            e = case.options.get("label_smoothing", 0.0)
            assert math.isnan(e) or float(f.array([e])[0]) == e
            back = Case.from_json(case.to_json())
            assert back.case_id == case.case_id and back.note == case.note
            assert all(same_bits(back[k], a) for k, a in case.inputs.items())


def test_generated_cases_are_in_domain_unless_invalid_on_purpose(generated):
    for cases in generated.values():
        for case in cases:
            assert (out_of_domain(case) is not None) == (case.note == "regime:invalid_labels"), case.to_json()


def test_invalid_cases_are_a_modest_share(generated):
    notes = [c.note for cases in generated.values() for c in cases]
    assert 0 < notes.count("regime:invalid_labels") / len(notes) < 0.15


def test_generated_cases_mix_the_regimes_of_each_variant(generated):
    for name in VARIANTS:
        notes = {c.note for dtype in DTYPES for c in generated[name, dtype]}
        assert len(notes) >= min(4, len(regimes_for(name))), name


def test_corpus_out_of_domain_cases_are_the_ones_noted_invalid():
    for case in load_corpus():
        noted = case.note.startswith("invalid:") or "out of domain" in case.note
        assert (out_of_domain(case) is not None) == noted, case.note


# -- what each value strategy produces ------------------------------------------------------------------

SHAPES = st.sampled_from([(1,), (3,), (2, 4), (2, 3, 2)])


def draw_values(strategy):
    return st.tuples(st.sampled_from(DTYPES), SHAPES).flatmap(
        lambda ds: st.tuples(st.just(ds[0]), strategy(*ds)))


def magnitudes(arr: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(arr.astype(np.float64))


@given(draw_values(v.ordinary_logits))
def test_ordinary_logits_are_at_most_10_in_magnitude(dtype_arr):
    dtype, arr = dtype_arr
    assert arr.dtype == fmt(dtype).np_dtype and np.all(magnitudes(arr) <= 10)


@given(draw_values(v.extreme_logits))
def test_extreme_logits_include_a_magnitude_of_at_least_64(dtype_arr):
    dtype, arr = dtype_arr
    assert arr.dtype == fmt(dtype).np_dtype and np.all(np.isfinite(magnitudes(arr)))
    assert np.any(magnitudes(arr) >= 64)


@given(draw_values(v.overflow_edge_logits))
def test_overflow_edge_logits_include_one_within_a_few_ulps_of_an_edge(dtype_arr):
    dtype, arr = dtype_arr
    f = fmt(dtype)
    edges = np.array(v._EDGES)
    ulp = 2.0 ** (np.floor(np.log2(edges)) - f.precision + 1)
    assert any(np.any(np.abs(m - edges) <= 6 * ulp) for m in magnitudes(arr).ravel())


@given(draw_values(v.subnormal_logits))
def test_subnormal_logits_include_a_subnormal_or_zero(dtype_arr):
    dtype, arr = dtype_arr
    assert np.any(magnitudes(arr) <= fmt(dtype).min_normal)


@given(draw_values(v.nonfinite_logits))
def test_nonfinite_logits_include_an_infinity_or_nan(dtype_arr):
    _, arr = dtype_arr
    assert not np.all(np.isfinite(magnitudes(arr)))


@given(draw_values(v.edge_probs))
def test_edge_probs_stay_in_the_unit_interval(dtype_arr):
    _, arr = dtype_arr
    assert np.all((arr.astype(np.float64) >= 0) & (arr.astype(np.float64) <= 1))


@given(any_dtype(lambda d: v.layouts(True).flatmap(
    lambda sa: st.tuples(st.just(d), st.just(sa), v.soft_labels(d, sa[0], sa[1] % len(sa[0]))))))
def test_soft_label_rows_lie_in_the_unit_interval(d_layout_labels):
    dtype, (shape, _), labels = d_layout_labels
    assert labels.shape == shape and labels.dtype == fmt(dtype).np_dtype
    assert np.all((labels.astype(np.float64) >= 0) & (labels.astype(np.float64) <= 1))


@given(st.integers(1, 64), st.data())
def test_exact_soft_label_rows_sum_to_one_in_every_dtype(c, data):
    row = data.draw(v._dyadic_row(c))
    for dtype in DTYPES:
        rounded = fmt(dtype).array(row).astype(np.float64)
        assert np.array_equal(rounded, row) and math.fsum(rounded) == 1


# -- what each case regime produces ------------------------------------------------------------------------

@given(any_dtype(lambda d: st.sampled_from(regimes_variants("masked_rows")).flatmap(lambda n: masked_rows(n, d))))
def test_masked_rows_put_infinities_only_where_nothing_is_at_stake(case):
    x = case["logits"].astype(np.float64)
    assert x.size == 0 or np.any(np.isinf(x))
    labels = case.get("labels")
    if case.variant == "sigmoid_bce_logits":
        z = labels.astype(np.float64)
        assert np.all(z[x == -np.inf] == 0) and np.all(z[x == np.inf] == 1)
        return
    ax = case.class_axis
    rows = v.to_rows(x, ax)
    partial = ~np.all(rows == -np.inf, axis=1)  # fully masked rows are the undefined sub-case
    if labels is not None and labels.dtype.kind not in "iu":
        at_stake = v.to_rows(labels.astype(np.float64), ax) != 0
        assert not np.any((rows == -np.inf) & at_stake & partial[:, None])
    elif labels is not None:
        target = rows[np.arange(rows.shape[0]), labels.reshape(-1)]
        assert np.all(target[partial] > -np.inf)


@given(any_dtype(lambda d: ignored_targets("softmax_ce_sparse", d)))
def test_ignored_targets_set_ignore_index_and_use_it(case):
    assert case.opt("ignore_index") is not None
    labels = case["labels"]
    assert labels.size == 0 or np.any(labels == case.opt("ignore_index"))


@given(any_dtype(lambda d: st.sampled_from(regimes_variants("zero_weights")).flatmap(lambda n: zero_weights(n, d))))
def test_zero_weights_hold_a_zero_weight(case):
    weights = [case[k] for k in ("weights", "class_weights", "pos_weight") if case.get(k) is not None]
    assert weights
    assert any(w.size == 0 or np.any(w.astype(np.float64) == 0) for w in weights)


@given(any_dtype(lambda d: st.sampled_from(["sampled_softmax", "nce"]).flatmap(lambda n: accidental_hits(n, d))))
def test_accidental_hits_sample_a_true_id(case):
    assert np.isin(case["sampled"], case["labels"]).any()
