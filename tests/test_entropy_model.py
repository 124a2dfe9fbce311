"""The learned factorized entropy model (torch) and its export to CDF tables."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splitinfer.codec import CdfTables, decode, encode  # noqa: E402
from splitinfer.nn.entropy_models import EntropyBottleneck  # noqa: E402


def _fit(eb: EntropyBottleneck, samples: torch.Tensor, steps: int = 300) -> None:
    opt = torch.optim.Adam([p for n, p in eb.named_parameters() if n != "quantiles"], lr=1e-2)
    aux = torch.optim.Adam([eb.quantiles], lr=0.05)
    for _ in range(steps):
        _, lik = eb(samples, training=True)
        loss = -torch.log2(lik).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        a = eb.aux_loss(); aux.zero_grad(); a.backward(); aux.step()


def test_likelihoods_are_probabilities_over_integers():
    torch.manual_seed(0)
    eb = EntropyBottleneck(4)
    grid = torch.arange(-200, 201, dtype=torch.float32).view(1, 1, -1).repeat(1, 4, 1)
    lik = eb.likelihood(grid)
    assert lik.shape == grid.shape
    assert torch.all(lik > 0) and torch.all(lik <= 1)
    assert torch.allclose(lik.sum(-1), torch.ones(1, 4), atol=1e-3)


def test_training_lowers_rate_and_finds_tails():
    torch.manual_seed(0)
    eb = EntropyBottleneck(3)
    scales = torch.tensor([0.3, 2.0, 8.0]).view(1, 3, 1)
    y = torch.randn(512, 3, 1) * scales
    before = -torch.log2(eb(torch.round(y), training=False)[1]).mean().item()
    _fit(eb, y)
    after = -torch.log2(eb(torch.round(y), training=False)[1]).mean().item()
    assert after < before
    # the wide channel needs the widest support; tails hold about tail_mass
    offsets, pmfs, tails = eb.pmf_tables()
    widths = [len(p) for p in pmfs]
    assert widths[2] > widths[1] > widths[0]
    assert np.all(tails < 0.01)


def test_cdf_tables_code_what_the_model_predicts():
    torch.manual_seed(0)
    eb = EntropyBottleneck(8)
    y = torch.randn(256, 8, 1) * torch.linspace(0.2, 5, 8).view(1, 8, 1)
    _fit(eb, y, steps=200)
    tables = CdfTables.from_pmfs(*eb.pmf_tables())
    symbols = torch.round(y[:64, :, 0]).to(torch.int32).numpy()
    with torch.no_grad():
        model_bits = -torch.log2(eb(torch.round(y[:64]), training=False)[1]).sum(dim=(1, 2)).numpy()
    for s, mb in zip(symbols, model_bits):
        data = encode(s, tables)
        assert np.array_equal(decode(data, tables), s)
        # the quantized tables cost about what the float model estimates
        assert abs(tables.information_bits(s) - mb) < 0.05 * mb + 1
