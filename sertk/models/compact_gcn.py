"""``compact_gcn``: compact spectral graph network (Shirian & Guha, ICASSP 2021), papers.md
section 7.

Each utterance is a graph with one node per frame: a cycle graph (``graph: cycle``) or a line
(path) graph (``graph: line``), each node linked to its 2 neighbours. Two spectral graph
convolution layers ``H <- ReLU(U MLP(g(lambda) * U^T H))`` are followed by sum pooling over the
nodes, dropout and one FC layer (softmax in the loss). The graph Fourier basis ``U`` is never
computed by an eigendecomposition: for the cycle graph the Laplacian is circulant and ``U^T`` is
the orthonormal real DFT (``torch.fft.rfft``: rows DC, cos/sin pairs, Nyquist); for the line
graph it is the orthonormal DCT-II (via an FFT of the even extension). ``graph_basis`` gives
the explicit matrices for tests and a generic check; ``graph_laplacian`` builds the Laplacian
from the adjacency matrix.

The graph is built per utterance on its real frames only (the transform size is the length),
so utterances of equal length are transformed together and a batch is a list of such groups:
padding never enters a graph and the output of an utterance does not depend on its batch.

Following the authors' repository (AmirSh15/Compact_SER, ``graphcnn.py``): the spectral
"MLP filter" is a 2-layer MLP (Linear-BatchNorm-ReLU-Linear, 128 hidden units) applied to the
feature vector of every graph frequency (weights shared over frequencies), node width 64,
ReLU after each graph layer, sum pooling, dropout 0.5, input features standardised (sertk's
global CMVN), fixed-size graphs of 120 frames (``train.segment``/``eval_segment`` in the
config). With the paper's single FC layer and 32-d input this gives 30,724 parameters (about
30K, as the paper states).

Not fixed by the paper (choices, in ``conf/model/compact_gcn.yaml``):

* the spectral filter of the paper's ``(U^T X)(U^T W)`` is, for graphs of any size, a
  per-channel frequency response ``g(lambda)`` given by a small MLP of the graph frequency
  (1 -> ``filter_hidden`` = 8 -> channels, tanh; initial response close to 1, which is the
  repository's filter); ``filter_hidden: 0`` drops it (exactly the repository's layer);
* Laplacians: cycle -- the normalised Laplacian ``D^-1/2 L D^-1/2 = L / 2`` (frequencies
  ``1 - cos(2 pi k / M)``); line -- ``L / 2`` (combinatorial Laplacian over the maximum degree,
  frequencies ``1 - cos(pi k / M)``), because the DCT-II diagonalises the combinatorial but not
  the normalised line-graph Laplacian (papers.md's suggestion);
* the real DFT basis (cos/sin pairs) inside the cycle graph's 2-d eigenspaces: the MLP acts
  per frequency row, so this choice (like the repository's ``torch.eig`` basis) matters;
* default graph ``line`` (the repository's default; the paper reports both);
* the IEMOCAP spontaneity flag (P = 35) is not used: sertk passes no metadata to models; the
  input is IS09 LLDs + deltas, 32-d (the paper's P = 34 without the flag).

FLOPs of ``sertk models info`` cover the MLPs (the FFTs are not counted by the flop counter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sertk.models.registry import MODELS

GRAPHS = ("cycle", "line")


def _check_graph(graph: str) -> None:
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {', '.join(GRAPHS)}, got {graph!r}")


def graph_adjacency(n: int, graph: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Adjacency of the ``n``-node cycle or line graph (each node linked to 2 neighbours,
    zero diagonal)."""
    _check_graph(graph)
    a = torch.zeros(n, n, dtype=dtype)
    i = torch.arange(n - 1)
    a[i, i + 1] = 1.0
    a[i + 1, i] = 1.0
    if graph == "cycle" and n > 2:
        a[0, n - 1] = a[n - 1, 0] = 1.0
    return a


def graph_laplacian(n: int, graph: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Laplacian the model diagonalises, built from the adjacency ``A`` with ``L = D - A``:
    cycle ``D^-1/2 L D^-1/2``, line ``L / 2`` (see the module docstring)."""
    a = graph_adjacency(n, graph, dtype)
    deg = a.sum(1)
    lap = torch.diag(deg) - a
    if graph == "line":
        return lap / 2.0
    inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return inv[:, None] * lap * inv[None, :]


def graph_frequencies(n: int, graph: str, device: torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Laplacian eigenvalues in the row order of :func:`graph_fourier` (``[n]``, in [0, 2])."""
    _check_graph(graph)
    if graph == "line":
        k = torch.arange(n, device=device, dtype=torch.float64)
        return (1.0 - torch.cos(math.pi * k / n)).to(dtype)
    ks = [0] + [k for k in range(1, (n + 1) // 2) for _ in range(2)]
    if n % 2 == 0 and n > 0:
        ks.append(n // 2)
    k = torch.tensor(ks, device=device, dtype=torch.float64)
    return (1.0 - torch.cos(2.0 * math.pi * k / n)).to(dtype)


def _fft_dtype(x: torch.Tensor) -> torch.Tensor:
    """Half precision FFTs need power-of-2 sizes (cuFFT): transform in float32 under AMP."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def graph_fourier(x: torch.Tensor, graph: str) -> torch.Tensor:
    """``U^T x`` along dim 1 of ``x [B, n, D]`` (orthonormal real DFT or DCT-II)."""
    _check_graph(graph)
    x = _fft_dtype(x)
    n = x.shape[1]
    if graph == "line":
        ext = torch.cat([x, x.flip(1)], dim=1)  # even extension, length 2n
        spec = torch.fft.rfft(ext, dim=1)[:, :n]
        k = torch.arange(n, device=x.device, dtype=x.dtype)
        phase = torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))
        c = 0.5 * (spec * phase.view(1, n, 1)).real  # unnormalised DCT-II
        scale = torch.full((n,), math.sqrt(2.0 / n), device=x.device, dtype=x.dtype)
        scale[0] = math.sqrt(1.0 / n)
        return c * scale.view(1, n, 1)
    spec = torch.fft.rfft(x, dim=1)
    half = (n - 1) // 2
    parts = [spec[:, :1].real / math.sqrt(n)]
    if half:
        pair = torch.stack([spec[:, 1:half + 1].real, -spec[:, 1:half + 1].imag], dim=2)
        parts.append(pair.flatten(1, 2) * math.sqrt(2.0 / n))
    if n % 2 == 0 and n > 1:
        parts.append(spec[:, n // 2:n // 2 + 1].real / math.sqrt(n))
    return torch.cat(parts, dim=1)


def inverse_graph_fourier(xh: torch.Tensor, graph: str) -> torch.Tensor:
    """``U xh`` along dim 1 of ``xh [B, n, D]`` (inverse of :func:`graph_fourier`)."""
    _check_graph(graph)
    xh = _fft_dtype(xh)
    b, n, d = xh.shape
    if graph == "line":
        scale = torch.full((n,), math.sqrt(2.0 / n), device=xh.device, dtype=xh.dtype)
        scale[0] = math.sqrt(1.0 / n)
        # x_t = sum_k scale_k X_k cos(pi k (2t + 1) / 2n), as an inverse real FFT of length 2n
        amp = xh * scale.view(1, n, 1) * n
        amp = torch.cat([amp[:, :1] * 2.0, amp[:, 1:], amp.new_zeros(b, 1, d)], dim=1)
        k = torch.arange(n + 1, device=xh.device, dtype=xh.dtype)
        phase = torch.polar(torch.ones_like(k), math.pi * k / (2 * n))
        return torch.fft.irfft(amp * phase.view(1, n + 1, 1), n=2 * n, dim=1)[:, :n]
    half = (n - 1) // 2
    re = [xh[:, :1] * math.sqrt(n)]
    im = [torch.zeros_like(xh[:, :1])]
    if half:
        pair = xh[:, 1:1 + 2 * half].reshape(b, half, 2, d) * math.sqrt(n / 2.0)
        re.append(pair[:, :, 0])
        im.append(-pair[:, :, 1])
    if n % 2 == 0 and n > 1:
        re.append(xh[:, n - 1:] * math.sqrt(n))
        im.append(torch.zeros_like(xh[:, n - 1:]))
    spec = torch.complex(torch.cat(re, dim=1), torch.cat(im, dim=1))
    return torch.fft.irfft(spec, n=n, dim=1)


def graph_basis(n: int, graph: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The explicit orthonormal basis ``U [n, n]`` (columns = eigenvectors) of the FFT path."""
    eye = torch.eye(n, dtype=dtype)[None]
    return graph_fourier(eye, graph)[0].T


class SpectralGraphConv(nn.Module):
    """``H' = U MLP(g(lambda) * (U^T H))`` on the graphs of a list of equal-length groups.

    ``U^T``/``U`` are the cycle/line graph Fourier transforms; ``g`` (``filter_hidden > 0``) is
    a per-channel frequency response from a small MLP of the graph frequency; the MLP
    (Linear-BatchNorm-ReLU-Linear) maps each frequency's feature vector. The MLP sees the rows
    of all graphs of the batch at once (real frequencies only, so BatchNorm statistics ignore
    padding).
    """

    def __init__(self, in_dim: int, out_dim: int, graph: str = "line", mlp_hidden: int = 128,
                 mlp_layers: int = 2, filter_hidden: int = 8, batchnorm: bool = True):
        super().__init__()
        _check_graph(graph)
        self.graph = graph
        self.filter = None
        if filter_hidden > 0:
            self.filter = nn.Sequential(nn.Linear(1, filter_hidden), nn.Tanh(),
                                        nn.Linear(filter_hidden, in_dim))
            nn.init.normal_(self.filter[2].weight, std=0.01)
            nn.init.ones_(self.filter[2].bias)
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(mlp_layers - 1):
            layers.append(nn.Linear(dim, mlp_hidden))
            if batchnorm:
                layers.append(nn.BatchNorm1d(mlp_hidden))
            layers.append(nn.ReLU())
            dim = mlp_hidden
        layers.append(nn.Linear(dim, out_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):  # the repository's initialisation
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def response(self, lam: torch.Tensor) -> torch.Tensor:
        """Frequency response ``g(lambda)`` per input channel: ``[N] -> [N, in_dim]``."""
        assert self.filter is not None
        return self.filter(lam.unsqueeze(-1))

    def graph_convolve(self, x: torch.Tensor) -> torch.Tensor:
        """The linear spectral convolution ``U g(Lambda) U^T x`` of ``x [B, n, D]`` alone."""
        n = x.shape[1]
        lam = graph_frequencies(n, self.graph, x.device, x.dtype)
        xh = graph_fourier(x, self.graph) * self.response(lam).unsqueeze(0)
        return inverse_graph_fourier(xh, self.graph)

    def forward(self, groups: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        hats = [graph_fourier(x, self.graph) for x in groups]
        rows = torch.cat([h.reshape(-1, h.shape[-1]) for h in hats])
        if self.filter is not None:
            lam = torch.cat([graph_frequencies(h.shape[1], self.graph, h.device, h.dtype)
                             .repeat(h.shape[0]) for h in hats])
            rows = rows * self.response(lam)
        rows = self.mlp(rows)
        sizes = [h.shape[0] * h.shape[1] for h in hats]
        return [inverse_graph_fourier(r.view(h.shape[0], h.shape[1], -1), self.graph)
                for r, h in zip(rows.split(sizes), hats)]


@MODELS.register("compact_gcn", summary="frames as cycle/line graph nodes, DFT/DCT spectral "
                 "GCN, sum pooling (~30K params)",
                 paper="Shirian & Guha, Compact Graph Architecture for Speech Emotion "
                       "Recognition, ICASSP 2021")
class CompactGCN(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, graph: str = "line",
                 num_layers: int = 2, hidden_dim: int = 64, mlp_hidden: int = 128,
                 mlp_layers: int = 2, filter_hidden: int = 8, batchnorm: bool = True,
                 pooling: str = "sum", fc_hidden: int = 0, dropout: float = 0.5):
        super().__init__()
        if pooling not in ("sum", "mean"):
            raise ValueError(f"pooling must be sum or mean, got {pooling!r}")
        dims = [input_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(
            SpectralGraphConv(i, o, graph, mlp_hidden, mlp_layers, filter_hidden, batchnorm)
            for i, o in zip(dims[:-1], dims[1:]))
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        if fc_hidden > 0:  # the repository's head: FC-dropout-PReLU-FC
            self.head: nn.Module = nn.Sequential(
                nn.Linear(hidden_dim, fc_hidden), nn.Dropout(dropout), nn.PReLU(fc_hidden),
                nn.Linear(fc_hidden, num_classes))
        else:  # the paper's single FC layer
            self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        index, groups = [], []
        for n in sorted(set(lengths.tolist())):  # one graph size per group
            idx = torch.nonzero(lengths == n).squeeze(1)
            index.append(idx)
            groups.append(feats[idx, :n])
        for layer in self.layers:
            groups = [F.relu(h) for h in layer(groups)]
        pooled = torch.cat([h.sum(1) if self.pooling == "sum" else h.mean(1) for h in groups])
        order = torch.cat(index)
        out = pooled.new_zeros(feats.shape[0], pooled.shape[1]).index_copy(0, order, pooled)
        return self.head(self.dropout(out))
