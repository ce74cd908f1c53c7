"""vittle_bench.metrics.stats: interval coverage on simulated data, paired tests against hand computations and
scipy.stats, robustness summaries, and the per-sample decomposition of every metric the adapters report."""

from __future__ import annotations

import itertools
import json
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from vittle_bench.adapters.base import declared_metric
from vittle_bench.metrics import stats

from synthetic_runs import write_run

TRUE_RATE, N, REPEATS = 0.3, 200, 200


def test_bootstrap_metrics_covers_a_known_bernoulli_rate():
    """95 % intervals from repeated seeded draws of Bernoulli(0.3) samples cover 0.3 at about the nominal rate."""
    covered = 0
    for rep in range(REPEATS):
        draws = np.random.default_rng(rep).random(N) < TRUE_RATE
        (_, value, low, high, n, _), = stats.bootstrap_metrics(lambda idx, draws=draws: {"accuracy": draws[idx].mean()},
                                                              N, seed=rep)
        covered += low <= TRUE_RATE <= high
    assert covered / REPEATS >= 0.90
    assert covered / REPEATS <= 0.99  # not trivially wide either


def test_paired_condition_average_covers_its_true_value():
    """The interval of an average over three shift conditions whose answers are correlated through the
    sample (one latent per sample) covers the true average at about the nominal rate."""
    rates = np.array([0.8, 0.6, 0.45])
    covered = 0
    for rep in range(REPEATS):
        latent = np.random.default_rng(rep).random(N)
        correct = (latent[None, :] < rates[:, None]).astype(float)  # comonotone across conditions
        value, low, high = stats.ratio_bootstrap(correct, np.ones_like(correct), seed=rep)
        covered += low <= rates.mean() <= high
    assert covered / REPEATS >= 0.90


def test_pairing_makes_the_difference_interval_narrower_than_independent_intervals():
    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.7).astype(float)
    b = np.where(rng.random(300) < 0.9, a, 1 - a)  # B agrees with A on 90 % of samples
    ones = np.ones_like(a)
    paired = stats.paired_bootstrap(a, ones, b, ones, seed=1)
    _, la, ha = stats.ratio_bootstrap(a, ones, seed=2)
    _, lb, hb = stats.ratio_bootstrap(b, ones, seed=3)
    unpaired_width = np.hypot(ha - la, hb - lb)
    assert paired.ci_high - paired.ci_low < 0.6 * unpaired_width


def test_resample_weights_are_seeded_multinomial_counts():
    w = stats.resample_weights(50, seed=7, n_boot=400)
    assert w.shape == (400, 50) and (w.sum(axis=1) == 50).all()
    assert np.array_equal(w, stats.resample_weights(50, seed=7, n_boot=400))
    assert not np.array_equal(w, stats.resample_weights(50, seed=8, n_boot=400))
    assert abs(w.mean() - 1) < 0.01 and abs(w.var() - (1 - 1 / 50)) < 0.05  # Multinomial(n, 1/n) moments


def test_paired_bootstrap_matches_a_hand_loop_and_scipy():
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1] * 2, dtype=float)
    b = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1] * 2, dtype=float)
    ones = np.ones_like(a)
    result = stats.paired_bootstrap(a, ones, b, ones, seed=11, n_boot=2000)
    # the same draws by hand: each weight row is one resample of the 40 pairs
    weights = stats.resample_weights(len(a), seed=11, n_boot=2000)
    by_hand = np.array([(w @ b - w @ a) / w.sum() for w in weights])
    assert result.diff == pytest.approx(b.mean() - a.mean())
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])))
    # scipy's paired percentile bootstrap (other random draws) agrees up to Monte-Carlo error
    ref = scipy_stats.bootstrap((a, b), lambda x, y, axis: y.mean(axis) - x.mean(axis), paired=True,
                                method="percentile", n_resamples=4000, random_state=3, vectorized=True)
    assert result.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert result.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.03)


def test_bootstrap_pvalue():
    assert stats.bootstrap_pvalue(np.r_[np.full(95, 1.0), np.full(5, -1.0)]) == pytest.approx(2 * 6 / 101)
    assert stats.bootstrap_pvalue(np.ones(999)) == pytest.approx(2 / 1000)
    assert stats.bootstrap_pvalue(np.r_[np.ones(50), -np.ones(50)]) == 1.0


@pytest.mark.parametrize("only_a,only_b,both,neither", [(2, 9, 30, 5), (7, 7, 10, 10), (0, 6, 3, 1), (12, 3, 40, 40)])
def test_mcnemar_exact_matches_the_binomial_formula(only_a, only_b, both, neither):
    correct_a = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * neither, dtype=bool)
    correct_b = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * neither, dtype=bool)
    result = stats.mcnemar_exact(correct_a, correct_b)
    # statsmodels' mcnemar(exact=True): 2 x P(Binomial(b + c, 1/2) <= min(b, c)), capped at 1
    k, n = min(only_a, only_b), only_a + only_b
    by_hand = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert result.p_value == pytest.approx(by_hand)


def test_mcnemar_fixed_table_value_and_no_discordant_pairs():
    a = np.array([1, 1] + [0] * 9 + [1] * 5, dtype=bool)
    b = np.array([0, 0] + [1] * 9 + [1] * 5, dtype=bool)
    assert stats.mcnemar_exact(a, b).p_value == pytest.approx(134 / 2048)  # 2 x (1 + 11 + 55) / 2^11
    assert stats.mcnemar_exact(a, a).p_value == 1.0


def test_wilcoxon_matches_exact_enumeration():
    a = np.array([5.0, 6.0, 4.0, 3.0, 7.0, 2.0, 8.0])
    b = a + np.array([1.5, -0.5, 2.0, 3.0, -1.0, 2.5, 0.0])  # last pair ties: dropped (zero_method "wilcox")
    d = (b - a)[b != a]
    ranks = scipy_stats.rankdata(np.abs(d))
    w_minus = ranks[d < 0].sum()  # = 3
    sums = [sum(s) for r in range(len(d) + 1) for s in itertools.combinations(range(1, len(d) + 1), r)]
    by_hand = 2 * np.mean(np.array(sums) <= min(w_minus, ranks.sum() - w_minus))
    assert w_minus == 3 and by_hand == pytest.approx(10 / 64)
    assert stats.wilcoxon_test(a, b) == pytest.approx(by_hand)
    assert stats.wilcoxon_test(a, a) == 1.0


def test_flip_rate_relative_robustness_and_severity_auc():
    assert stats.flip_rate(np.array([1, 1, 0, 1, 0]), np.array([0, 1, 1, 0, 0])) == pytest.approx(2 / 5)
    assert stats.relative_robustness(0.6, 0.8) == pytest.approx(0.75)
    assert np.isnan(stats.relative_robustness(0.5, 0.0))
    # trapezoids: (0.9+0.8)/2*1 + (0.8+0.6)/2*2 + (0.6+0.3)/2*2 = 3.15, over a range of 5
    assert stats.severity_auc(np.array([3, 0, 5, 1]), np.array([0.6, 0.9, 0.3, 0.8])) == pytest.approx(0.63)
    assert stats.severity_auc(np.array([0, 5]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_per_sample_decomposition_reproduces_every_adapter_metric(tmp_path):
    """scale x sum(num) / sum(den) over a cell's records (sum(num) for counts) equals what the task adapters
    wrote to results.csv: the leaderboard and compare resample exactly the metric results.csv reports."""
    run = write_run(tmp_path / "run", "m", skill=0.7, n=40, errors={("syn_mc", "keyboard", 3): 3,
                                                                    ("syn_pope", "clean", 0): 2})
    results = pd.read_csv(run / "results.csv")
    records = pd.DataFrame([json.loads(line) for line in (run / "samples.jsonl").open()])
    checked = 0
    for row in results.itertuples():
        spec = declared_metric(row.metric)
        assert spec is not None and spec.unit == row.unit, row.metric
        if spec.parts is None:
            assert row.metric == "n_errors"  # counted by the runner over failed records
            continue
        cell = records[(records.task == row.task) & (records.condition == row.condition)]
        num, den, _ = spec.parts(cell)
        value = num.sum() if spec.count else spec.scale * num.sum() / den.sum() if den.sum() else spec.zero
        assert value == pytest.approx(row.value, rel=1e-5, abs=1e-6), (row.task, row.condition, row.metric)
        checked += 1
    metrics = set(results["metric"])
    assert {"accuracy", "f1", "precision", "recall", "yes_ratio", "unparseable_rate",
            "relative_score_overlap", "relative_score_overlap/conv", "judge_failed"} <= metrics
    assert checked == (results["metric"] != "n_errors").sum() == 96


@pytest.mark.slow
@pytest.mark.parametrize("n,rate", [(50, 0.5), (200, 0.3), (1000, 0.05)])
def test_coverage_over_1000_draws(n, rate):
    """Tighter check (1,000 seeded draws, standard error about 0.7 points): both bootstrap forms within
    [93 %, 97.5 %] for a nominal 95 %."""
    covered_index = covered_weights = 0
    for rep in range(1000):
        draws = (np.random.default_rng(10_000 + rep).random(n) < rate).astype(float)
        _, low, high = stats.ratio_bootstrap(draws, np.ones_like(draws), seed=rep)
        covered_weights += low <= rate <= high
        if n == 200:
            (_, _, low, high, _, _), = stats.bootstrap_metrics(lambda idx, draws=draws: {"a": draws[idx].mean()}, n,
                                                               seed=rep)
            covered_index += low <= rate <= high
    assert 0.93 <= covered_weights / 1000 <= 0.975
    if n == 200:
        assert 0.93 <= covered_index / 1000 <= 0.975
