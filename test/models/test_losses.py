"""ITBO and TSO against values worked out by hand (tolerance 1e-6)."""
import math

import pytest
import torch

from clipn.losses import clipn_loss, itbo_loss, tso_loss


def unit(*v):
    t = torch.tensor(v, dtype=torch.float64)
    return t / t.norm()


def test_two_pairs_by_hand():
    # f1=g1=gno2=(1,0), f2=g2=gno1=(0,1), s=1:
    # p_yes_ii = e/(e+1); p_no_12 = p_no_21 = e/(1+e) -> both losses -log(sigmoid(1)).
    f = torch.stack([unit(1, 0), unit(0, 1)])
    g = torch.stack([unit(1, 0), unit(0, 1)])
    g_no = torch.stack([unit(0, 1), unit(1, 0)])
    loss = clipn_loss(f, g, g_no, torch.tensor(1.0, dtype=torch.float64))
    expected = -math.log(1 / (1 + math.exp(-1)))  # 0.31326168751822286
    assert loss.yes.item() == pytest.approx(expected, abs=1e-12)
    assert loss.no.item() == pytest.approx(expected, abs=1e-12)
    tso = 2 - math.sqrt(2 + 1e-4)  # g . g_no = 0
    assert loss.tso.item() == pytest.approx(tso, abs=1e-12)
    assert loss.total.item() == pytest.approx(0.5 * (2 * expected + tso), abs=1e-12)
    assert loss.total.item() == pytest.approx(0.6061372, abs=1e-6)


def test_no_term_averages_over_i_not_j_only():
    # Three pairs with distinct cosines; the diagonal must not enter L_no, and the
    # off-diagonal sum is divided by N^2 - N = 6.
    f = torch.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])
    g = torch.stack([unit(1, 1, 0), unit(0, 1, 2), unit(3, 0, 1)])
    g_no = torch.stack([unit(0, 1, 1), unit(2, 0, 1), unit(1, 2, 0)])
    s = 2.5
    loss_yes, loss_no = itbo_loss(f, g, g_no, torch.tensor(s, dtype=torch.float64))
    total_no, total_yes = 0.0, 0.0
    for i in range(3):
        for j in range(3):
            y = math.exp(s * float(f[i] @ g[j]))
            n = math.exp(s * float(f[i] @ g_no[j]))
            if i == j:
                total_yes += -math.log(y / (y + n))
            else:
                total_no += -math.log(n / (y + n))
    assert loss_yes.item() == pytest.approx(total_yes / 3, abs=1e-12)
    assert loss_no.item() == pytest.approx(total_no / 6, abs=1e-12)


def test_tso_zero_when_opposite_and_large_when_equal():
    g = torch.stack([unit(1, 2), unit(-3, 1)])
    assert tso_loss(g, -g).item() == pytest.approx(2 - math.sqrt(4 + 1e-4), abs=1e-12)  # ~0
    assert tso_loss(g, g).item() == pytest.approx(2 - math.sqrt(1e-4), abs=1e-12)  # 1.99


def test_itbo_is_stable_for_large_logits():
    f = torch.stack([unit(1, 0), unit(0, 1)]).float()
    loss_yes, loss_no = itbo_loss(f, f, -f, torch.tensor(1e4))
    assert torch.isfinite(loss_yes) and torch.isfinite(loss_no)


def test_itbo_needs_two_pairs():
    with pytest.raises(ValueError, match="at least two"):
        itbo_loss(torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 2), torch.tensor(1.0))
