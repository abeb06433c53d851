"""The split analysis's corrected z-test decision: Bonferroni over the pairs compared, with
known answers (the same decision as dbt's splits_are_representative; tests/pipeline
/test_split_check.py checks the two against each other on real builds)."""

from __future__ import annotations

import pytest
from scipy import stats

from reports import quality_page
from reports import split_analysis as sa

SPLITS = ("validation", "test")


def analysis_of(
    z_scores: dict[str, tuple[float | None, float | None]], alpha: float = sa.ALPHA
) -> sa.SplitAnalysis:
    """A split analysis whose only content is these z-scores: {column: (z validation, z test)};
    None is a column constant in train."""
    columns = tuple(
        sa.ColumnAnalysis(
            column=name,
            std=1.0,
            train_mean=0.0,
            train_std=1.0,
            curve=(),
            knee=None,
            knee_by_range_start=(),
            tests=tuple(
                sa.SplitTest(split, 1000, 0.0, z, None if z is None else 2 * stats.norm.sf(abs(z)))
                for split, z in zip(SPLITS, pair, strict=True)
            ),
        )
        for name, pair in z_scores.items()
    )
    split_rows = {"train": 1000, "validation": 1000, "test": 1000}
    return sa.SplitAnalysis("synthetic", 3000, split_rows, columns, alpha)


def test_bonferroni_threshold_known_answers():
    assert round(sa.bonferroni_z_threshold(0.05, 18), 4) == 2.9913  # 9 columns x 2 splits
    assert round(sa.bonferroni_z_threshold(0.05, 16), 4) == 2.9552
    assert sa.bonferroni_z_threshold(0.05, 1) == pytest.approx(1.959963984540054, rel=1e-12)
    for alpha in (0.01, 0.05, 0.1):
        for m in (1, 2, 9, 18, 100):
            threshold = sa.bonferroni_z_threshold(alpha, m)
            # The definition: a two-sided p-value of exactly alpha / m at |z| = threshold.
            assert 2 * stats.norm.sf(threshold) == pytest.approx(alpha / m, rel=1e-12)


def test_m_counts_the_pairs_compared_and_the_flag_is_corrected():
    # 8 columns x 2 splits compared, pickup_year constant in train: m = 16.
    z_scores = {f"column_{i}": (0.5, -0.5) for i in range(8)}
    z_scores["column_0"] = (2.5, 0.0)  # p = 0.012: below 0.05 but not below 0.05 / 16
    z_scores["column_1"] = (0.0, -3.1)  # p = 0.0019: below 0.05 / 16 = 0.003125
    z_scores["pickup_year"] = (None, None)
    analysis = analysis_of(z_scores)
    assert analysis.comparisons == 16
    assert analysis.z_threshold == pytest.approx(2.9551668, abs=1e-6)
    assert analysis.p_value_threshold == 0.05 / 16
    assert [(name, test.split) for name, test in analysis.flagged] == [("column_1", "test")]
    data = analysis.to_dict()
    assert (data["alpha"], data["comparisons"]) == (0.05, 16)
    assert data["z_threshold"] == analysis.z_threshold
    assert data["flagged"] == [
        {"column": "column_1", "split": "test", "z": -3.1, "p_value": pytest.approx(0.001935, 1e-3)}
    ]
    text = sa.text_report(analysis)
    assert "Bonferroni over 16 pairs at family-wise alpha 0.05: |z| > 2.9552" in text
    assert "column_1/test (z=-3.10, p=0.00194)" in text


def test_the_threshold_is_strict_and_follows_alpha():
    threshold = sa.bonferroni_z_threshold(0.05, 2)
    at = analysis_of({"fare_amount": (threshold, -threshold * (1 + 1e-9))})
    assert [test.split for _, test in at.flagged] == ["test"]  # |z| > threshold, not >=
    looser = analysis_of({"fare_amount": (2.3, 0.0)}, alpha=0.1)  # threshold 1.96 at alpha 0.1
    assert [test.split for _, test in looser.flagged] == ["validation"]


def test_nothing_compared_flags_nothing():
    analysis = analysis_of({"pickup_year": (None, None)})
    assert analysis.comparisons == 0
    assert (analysis.z_threshold, analysis.p_value_threshold, analysis.flagged) == (None, None, [])
    assert "No pair to compare" in quality_page.z_decision(analysis)


def test_the_page_words_the_decision_with_its_numbers():
    z_scores = {f"column_{i}": (0.1, 0.2) for i in range(9)}
    z_scores["column_3"] = (4.0, 0.2)
    decision = quality_page.z_decision(analysis_of(z_scores))
    assert decision.startswith('<p id="z-decision"><b>1 of 18 pairs flagged.</b>')
    assert "&alpha;/m = 0.05/18 = 0.00278, i.e. |z| &gt; 2.9913" in decision
    assert "for the 18 (column, held-out split) pairs compared" in decision
    flagged = quality_page.flagged_pairs_text(analysis_of(z_scores))
    assert flagged.startswith(
        "Flagged: <code>column_3</code> in validation (z = 4.00, p = 6.33e-05)."
    )
    assert "chance alone" not in flagged and "expected" not in flagged
