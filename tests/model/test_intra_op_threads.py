"""The detect stage scores on one torch thread: the process's setting comes back, and the
scores are those of torch's default threads to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from astrid.model.score import intra_op_threads, load_scorer  # noqa: E402


def test_setting_restored_even_on_error() -> None:
    old = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == old
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("scoring failed")
    assert torch.get_num_threads() == old


def test_one_thread_scores_equal_the_default_threads_to_float32_rounding() -> None:
    """The earlier computation ran on torch's default threads (2 on a 2-core machine):
    one thread sums the convolutions in another order, so logits move by float32 rounding
    (~1e-7 measured) and calibrated scores by less; bounded well under any decision."""
    scorer = load_scorer("default")
    rng = np.random.default_rng(3)
    stamps = rng.normal(0.0, 1.0, (12, scorer.channels, scorer.size, scorer.size))
    stamps = stamps.astype(np.float32)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        want_z, want = scorer.logits(stamps), scorer.score(stamps)
        with intra_op_threads(1):
            got_z, got = scorer.logits(stamps), scorer.score(stamps)
    finally:
        torch.set_num_threads(old)
    np.testing.assert_allclose(got_z, want_z, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
