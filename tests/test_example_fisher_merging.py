"""examples/fisher_merging.py in fast mode: Fisher-weighted merging beats plain averaging.

Checks against the pooled fit, the target a merge tries to reach without sharing data: for
logistic regression the Fisher merge lands within about one posterior σ of the pooled fit
while each model alone and the plain average sit several σ away; for the MLP (shared
starting point) the Fisher merge has a lower test log-loss than the plain average.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_example

# L-BFGS fits of six small models compile their gradients (~20 s CPU, more when shared).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return load_example("fisher_merging").main(tmp_path_factory.mktemp("merging"), fast=True)


def test_logistic_merge_is_close_to_the_pooled_fit(result):
    dist = result["logistic"]["mahalanobis_to_pooled"]
    assert dist["Fisher merge"] < 1.5
    assert dist["Fisher merge"] < 0.3 * min(dist["A"], dist["B"], dist["average"])
    scores = result["logistic"]["scores"]
    assert scores["Fisher merge"][0] < scores["average"][0]
    assert scores["Fisher merge"][0] == pytest.approx(scores["pooled fit"][0], rel=0.05)


def test_logistic_merged_fisher_is_the_sum(result):
    merged = result["logistic"]["merged"]
    F = result["logistic"]["fishers"]
    np.testing.assert_allclose(merged.matrix, F["A"].matrix + F["B"].matrix, rtol=1e-12)


def test_mlp_fisher_merge_beats_plain_average(result):
    scores = result["mlp"]["scores"]
    assert scores["Fisher merge"][0] < scores["average"][0]
    assert scores["Fisher merge"][1] >= scores["average"][1]
