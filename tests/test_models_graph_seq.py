"""stl_transformer, compact_gcn and nonverbal_seg: padded batches, padding invariance, size and
cost, and the model-specific checks (spectral graph convolution = circulant convolution, STL
depth, turns shorter than one segment)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sertk.models.compact_gcn  # noqa: F401  (registers the models)
import sertk.models.nonverbal_seg  # noqa: F401
import sertk.models.stl_transformer  # noqa: F401
from sertk.models.compact_gcn import (
    SpectralGraphConv,
    graph_adjacency,
    graph_basis,
    graph_fourier,
    graph_frequencies,
    graph_laplacian,
    inverse_graph_fourier,
)
from sertk.models.info import info
from sertk.models.nonverbal_seg import pause_segments
from sertk.models.registry import MODELS
from tests.model_checks import check_forward_backward, check_padding_invariance

SMALL_SEG = {"channels": [8, 16], "embed_dim": 32, "enc_hidden": 16, "dec_hidden": 32,
             "att_dim": 32, "segment_frames": 30, "segment_hop": 20}
CASES = [
    ("stl_transformer", 40, {}),
    ("compact_gcn", 32, {"graph": "line"}),
    ("compact_gcn", 32, {"graph": "cycle"}),
    ("compact_gcn", 32, {"graph": "cycle", "filter_hidden": 0, "fc_hidden": 16,
                         "pooling": "mean"}),
    ("nonverbal_seg", 64, SMALL_SEG),
    ("nonverbal_seg", 64, {**SMALL_SEG, "segmenter": "pause", "min_pause_frames": 5,
                           "fusion": "feature", "branches": {"verbal": {},
                                                             "nonverbal": {"embed_dim": 16}}}),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; small models run faster this way
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name, dim, conf", CASES)
def test_forward_backward_and_padding_invariance(name, dim, conf):
    torch.manual_seed(0)
    net = MODELS.build(name, input_dim=dim, num_classes=5, **conf)
    lengths = torch.tensor([83, 50, 17])
    x = torch.randn(3, 83, dim)
    x[0, 40:50] = -3.0  # a pause for the pause segmenter
    # every parameter, not only the trainable ones, must get a gradient: none may be frozen
    frozen = [pname for pname, p in net.named_parameters() if not p.requires_grad]
    assert not frozen, frozen
    check_forward_backward(net, x, lengths, num_classes=5)
    check_padding_invariance(net, x, lengths, extra_frames=57)  # padded to 140 frames


# ---------------------------------------------------------------- compact_gcn


@pytest.mark.parametrize("graph", ["cycle", "line"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_graph_fourier_basis_diagonalises_laplacian(graph, n):
    u = graph_basis(n, graph)
    lap = graph_laplacian(n, graph)
    lam = graph_frequencies(n, graph, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(u.T @ u, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(u.T @ lap @ u, torch.diag(lam), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.eigvalsh(lap), lam.sort().values, atol=1e-12,
                               rtol=0)
    x = torch.randn(2, n, 3, dtype=torch.float64)
    torch.testing.assert_close(graph_fourier(x, graph), torch.einsum("nk,bnd->bkd", u, x))
    torch.testing.assert_close(inverse_graph_fourier(graph_fourier(x, graph), graph), x)


def test_laplacians_from_adjacency():
    a = graph_adjacency(5, "cycle")
    assert a.diagonal().eq(0).all() and a.sum(1).eq(2).all()
    assert a[0, 4] == 1 and a[4, 0] == 1
    line = graph_adjacency(5, "line")
    assert line[0, 4] == 0 and line.sum(1).tolist() == [1, 2, 2, 2, 1]
    # cycle: D = 2I, so the normalised Laplacian is L / 2
    torch.testing.assert_close(graph_laplacian(5, "cycle"), (2 * torch.eye(5) - a.float())
                               .double() / 2)


@pytest.mark.parametrize("graph", ["cycle", "line"])
def test_spectral_conv_equals_polynomial_of_adjacency_laplacian(graph):
    """With a polynomial response g(l) = a + b l + c l^2 the spectral layer's convolution must
    equal (a I + b L + c L^2) X, L = D - A built from the explicit adjacency."""
    torch.manual_seed(0)
    n, d = 9, 3
    layer = SpectralGraphConv(d, 4, graph=graph).double()
    coef = torch.tensor([[0.7, -0.2, 1.1], [0.3, 0.9, -0.5], [-0.4, 0.25, 0.1]],
                        dtype=torch.float64)  # [power, channel]
    layer.response = lambda lam: sum(coef[p] * lam.unsqueeze(-1) ** p for p in range(3))
    x = torch.randn(2, n, d, dtype=torch.float64)
    a = graph_adjacency(n, graph)
    lap = torch.diag(a.sum(1)) - a
    lap = lap / 2  # cycle: D^-1/2 L D^-1/2 with D = 2I; line: L / max degree
    direct = sum(torch.einsum("nm,bmd->bnd", torch.linalg.matrix_power(lap, p), x) * coef[p]
                 for p in range(3))
    torch.testing.assert_close(layer.graph_convolve(x), direct, atol=1e-10, rtol=0)


def test_cycle_spectral_conv_equals_direct_circulant_convolution():
    """The learned response on a cycle graph is a circulant filter: compute g(L) from the
    adjacency-built Laplacian by eigendecomposition, check it is circulant, then apply it as an
    explicit circular convolution y[t] = sum_m c[(t - m) mod M] x[m]."""
    torch.manual_seed(0)
    n, d = 8, 3
    layer = SpectralGraphConv(d, 4, graph="cycle", filter_hidden=8)
    with torch.no_grad():
        layer.filter[2].weight.normal_(std=1.0)  # a non-trivial frequency response
    a = graph_adjacency(n, "cycle")
    deg = a.sum(1)
    lap = torch.diag(deg.rsqrt()) @ (torch.diag(deg) - a) @ torch.diag(deg.rsqrt())
    mu, v = torch.linalg.eigh(lap)
    with torch.no_grad():
        g = layer.response(mu.float()).double()  # [n, d]
    x = torch.randn(1, n, d)
    direct = torch.zeros(n, d, dtype=torch.float64)
    for ch in range(d):
        filt = v @ torch.diag(g[:, ch]) @ v.T
        col = filt[:, 0]
        circulant = torch.stack([torch.stack([col[(t - m) % n] for m in range(n)])
                                 for t in range(n)])
        torch.testing.assert_close(filt, circulant, atol=1e-6, rtol=0)
        for t in range(n):
            direct[t, ch] = sum(col[(t - m) % n] * x[0, m, ch].double() for m in range(n))
    with torch.no_grad():
        out = layer.graph_convolve(x)[0]
    torch.testing.assert_close(out.double(), direct, atol=1e-5, rtol=1e-5)
    # and shifting the input along the cycle shifts the output
    with torch.no_grad():
        shifted = layer.graph_convolve(x.roll(3, dims=1))[0]
    torch.testing.assert_close(shifted, out.roll(3, dims=0), atol=1e-5, rtol=1e-5)


def test_compact_gcn_size_and_graph_option():
    # paper configuration: 2 graph layers, MLP 128, width 64, 1 FC, 32-d IS09+deltas, 4 classes
    params = info("compact_gcn")["params"]
    print("compact_gcn parameters (paper configuration):", params)
    assert params == 30724 and 27_000 <= params <= 33_000  # "about 30K"
    torch.manual_seed(0)
    x, lengths = torch.randn(2, 50, 32), torch.tensor([50, 31])
    outs = {}
    for graph in ("line", "cycle"):
        torch.manual_seed(1)
        net = MODELS.build("compact_gcn", input_dim=32, num_classes=4, graph=graph).eval()
        with torch.no_grad():
            outs[graph] = net(x, lengths)
        assert torch.isfinite(outs[graph]).all()
    assert not torch.allclose(outs["line"], outs["cycle"])
    with pytest.raises(Exception, match="graph must be one of"):
        MODELS.build("compact_gcn", input_dim=32, num_classes=4, graph="star")


def test_compact_gcn_transforms_in_float32_under_autocast():
    # cuFFT needs power-of-2 sizes in half precision: the transforms must upcast (AMP training)
    net = MODELS.build("compact_gcn", input_dim=32, num_classes=4, graph="cycle")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 30, 32), torch.tensor([30, 21]))
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
    assert graph_fourier(torch.randn(1, 6, 2).half(), "line").dtype == torch.float32


# ---------------------------------------------------------------- stl_transformer


def test_stl_has_five_transformer_layers_by_default():
    net = MODELS.build("stl_transformer", input_dim=40, num_classes=4)
    layers = [m for m in net.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(layers) == 5 and len(net.stl.layers) == 5
    assert info("stl_transformer")["params"] > 0  # the shipped config builds too


# ---------------------------------------------------------------- nonverbal_seg


def test_nonverbal_seg_turn_shorter_than_one_segment():
    torch.manual_seed(0)
    net = MODELS.build("nonverbal_seg", input_dim=64, num_classes=4).eval()
    assert net.segment_frames == 100
    x, lengths = torch.randn(2, 250, 64), torch.tensor([250, 30])
    segs = net.segments(x, lengths)
    assert segs[1] == [(0, 30)] and segs[0] == [(0, 100), (100, 200), (150, 250)]
    with torch.no_grad():
        out = net(x, lengths)
        alone = net(x[1:, :30], lengths[1:])
        tiny = net(torch.randn(1, 3, 64), torch.tensor([3]))  # 3 frames
        logp, mask = net.segment_log_posteriors(x, lengths)
    assert torch.isfinite(out).all() and torch.isfinite(tiny).all()
    torch.testing.assert_close(alone[0], out[1], atol=1e-5, rtol=1e-5)
    # the utterance output is the log mean posterior of its segments: a distribution
    torch.testing.assert_close(out.logsumexp(-1), torch.zeros(2), atol=1e-5, rtol=0)
    assert logp.shape == (2, 3, 4) and mask.tolist() == [[True] * 3, [True, False, False]]
    torch.testing.assert_close(out[1], logp[1, 0], atol=1e-5, rtol=1e-5)


def test_pause_segmenter_cuts_in_pauses():
    x = torch.ones(100, 4)
    x[40:60] = -5.0  # a 20-frame pause
    x[90:93] = -5.0  # too short to cut
    segs = pause_segments(x, min_pause=10, threshold=0.2, max_len=200, hop=200)
    assert segs == [(0, 50), (50, 100)]
    # long segments are windowed
    assert pause_segments(torch.ones(250, 4), 10, 0.2, 100, 100) == [(0, 100), (100, 200),
                                                                     (150, 250)]
