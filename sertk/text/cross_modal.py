"""Cross-modal alignment of a speech embedding space ``S`` to a text embedding space ``T``: the
semantic extractor of Tzirakis et al. (ICASSP 2021), papers.md section 13.

A linear map ``W`` (``[E_t, E_s]``, applied as ``t' = W s``) is learnt in two steps, after
MUSE (Conneau et al., ICLR 2018):

1. **Domain-adversarial training** (:func:`adversarial_map`). A discriminator ``D`` gives
   ``P(speech = 1 | x)``; with mapped speech vectors ``W s_i`` and text vectors ``t_i``::

       L_D = -1/n sum log P(speech=1 | W s_i) - 1/m sum log P(speech=0 | t_i)
       L_G = -1/n sum log P(speech=0 | W s_i) - 1/m sum log P(speech=1 | t_i)

   ``dis_steps`` discriminator steps on ``L_D`` alternate with one step of ``W`` on ``L_G``,
   after which ``W`` is pulled back towards the orthogonal matrices,
   ``W <- (1 + beta) W - beta (W W^T) W`` (:func:`orthogonalize`).
2. **Procrustes refinement** (:func:`refine`) on a dictionary of paired vectors: with the
   pairs as columns of ``S_k`` and ``T_k``, ``W* = argmin_{W orthogonal} ||W S_k - T_k||_F =
   U V^T`` where ``U Sigma V^T = SVD(T_k S_k^T)`` (:func:`procrustes`; the paper writes the
   SVD of ``S T^T``, whose factors give the transposed map). Dictionaries: ``identical``
   (words spelt the same in both vocabularies, the most frequent first), ``mutual_nn``
   (mutual cosine nearest neighbours in the mapped space, rebuilt at each iteration, MUSE's
   refinement) or a file of ``speech_word text_word`` pairs.

Embeddings are read from word2vec/GloVe text files (``word v1 v2 ...`` per line, an optional
``n dim`` header line; :func:`load_embeddings`); the order of the file is taken as frequency
order (word2vec writes the most frequent words first). Speech2Vec and Word2Vec themselves are
external. ``W`` is saved as a ``.npy`` matrix (:func:`save_map`, :func:`load_map`).

Not in the paper (MUSE's defaults unless said): vectors scaled to unit length before
alignment (``normalize``; the same scaling must be used when mapping, see
``sertk.features.semantic``), ``W`` initialised to the identity (a semi-orthogonal matrix when
``E_s != E_t``), discriminator with two hidden layers (LeakyReLU 0.2, input dropout 0.1), SGD
with lr 0.1 for both players, batch 32, 5 discriminator steps per map step, beta 0.001, the
discriminator sees the 75000 most frequent words, 5 refinement iterations. No label smoothing:
the losses are exactly the ones above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sertk.errors import SertkError

DICTIONARIES = ("identical", "mutual_nn")


# ---------------------------------------------------------------- embeddings and maps


def load_embeddings(path: str | Path, max_words: int | None = None
                    ) -> tuple[list[str], np.ndarray]:
    """Read a word2vec/GloVe text file -> ``(words, vectors [N, E] float32)`` in file order.

    An optional first line ``n dim`` is a header. A duplicate word, a row of another width or
    a non-numeric value raises :class:`SertkError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"{path}: embedding file not found")
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if lineno == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                continue  # word2vec header: count and dimension
            if not fields:
                continue
            if max_words is not None and len(words) >= max_words:
                break
            words.append(_check_word(fields[0], seen, path, lineno))
            rows.append(_parse_vector(fields[1:], path, lineno, rows[0].size if rows else None))
    if not rows:
        raise SertkError(f"{path}: no embeddings")
    return words, np.stack(rows)


def _check_word(word: str, seen: set[str], path: Path, lineno: int) -> str:
    if word in seen:
        raise SertkError(f"{path}:{lineno}: duplicate word {word!r}")
    seen.add(word)
    return word


def _parse_vector(values: list[str], path: Path, lineno: int, dim: int | None) -> np.ndarray:
    try:
        vec = np.asarray(values, dtype=np.float32)
    except ValueError:
        raise SertkError(f"{path}:{lineno}: not a word followed by numbers") from None
    if vec.size == 0 or (dim is not None and vec.size != dim):
        raise SertkError(f"{path}:{lineno}: {vec.size} values, expected {dim or 'some'}")
    return vec


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def save_map(path: str | Path, w: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(w, dtype=np.float32))


def load_map(path: str | Path) -> np.ndarray:
    """A saved map ``W [E_t, E_s]``."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"{path}: map file not found")
    try:
        w = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:  # a pickled object array, not a .npy
        raise SertkError(f"{path}: not a numeric .npy map ({str(exc).splitlines()[0][:120]})") \
            from None
    if w.ndim != 2:
        raise SertkError(f"{path}: a map is a 2-D matrix, got shape {w.shape}")
    return w.astype(np.float32)


def orthogonality_error(w: np.ndarray) -> float:
    """``max |W^T W - I|`` (``W W^T`` when ``W`` is wide): 0 for a (semi-)orthogonal map."""
    w = np.asarray(w, dtype=np.float64)
    g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return float(np.abs(g - np.eye(g.shape[0])).max())


# ---------------------------------------------------------------- Procrustes


def procrustes(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """``W* = U V^T`` with ``U Sigma V^T = SVD(T_k S_k^T)``, ``S_k = src^T``, ``T_k = tgt^T``.

    ``src [n, E_s]`` and ``tgt [n, E_t]`` are paired rows; ``W*`` (``[E_t, E_s]``) minimises
    ``||W S_k - T_k||_F`` over the (semi-)orthogonal maps.
    """
    if src.ndim != 2 or tgt.ndim != 2 or src.shape[0] != tgt.shape[0] or src.shape[0] == 0:
        raise SertkError(f"procrustes: need paired rows, got {src.shape} and {tgt.shape}")
    m = tgt.astype(np.float64).T @ src.astype(np.float64)  # T_k S_k^T, [E_t, E_s]
    u, _, vt = np.linalg.svd(m, full_matrices=False)
    return (u @ vt).astype(np.float32)


def identical_dictionary(speech_words: list[str], text_words: list[str],
                         max_pairs: int | None = None) -> list[tuple[int, int]]:
    """Index pairs of the words present in both vocabularies, in speech-file order."""
    index = {w: i for i, w in enumerate(text_words)}
    pairs = [(i, index[w]) for i, w in enumerate(speech_words) if w in index]
    return pairs[:max_pairs] if max_pairs else pairs


def read_dictionary(path: str | Path, speech_words: list[str], text_words: list[str]
                    ) -> list[tuple[int, int]]:
    """Index pairs from a file of ``speech_word text_word`` lines (pairs with a word missing
    from either vocabulary are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise SertkError(f"{path}: dictionary file not found")
    s_index = {w: i for i, w in enumerate(speech_words)}
    t_index = {w: i for i, w in enumerate(text_words)}
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2:
            raise SertkError(f"{path}:{lineno}: expected 'speech_word text_word', got {line!r}")
        if fields[0] in s_index and fields[1] in t_index:
            pairs.append((s_index[fields[0]], t_index[fields[1]]))
    return pairs


def nearest_neighbours(query: np.ndarray, keys: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of each query row's cosine nearest key row (computed in chunks)."""
    q, k = normalize_rows(query), normalize_rows(keys)
    return np.concatenate([(q[i:i + chunk] @ k.T).argmax(1) for i in range(0, len(q), chunk)])


def mutual_nn_dictionary(mapped: np.ndarray, text: np.ndarray, max_rank: int = 15000
                         ) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of mutual cosine nearest neighbours among the ``max_rank`` most
    frequent mapped speech vectors and text vectors."""
    s, t = mapped[:max_rank], text[:max_rank]
    fwd, bwd = nearest_neighbours(s, t), nearest_neighbours(t, s)
    return [(i, int(j)) for i, j in enumerate(fwd) if bwd[j] == i]


def refine(speech: np.ndarray, text: np.ndarray, w: np.ndarray,
           speech_words: list[str] | None = None, text_words: list[str] | None = None,
           dictionary: str = "identical", iterations: int = 5, max_pairs: int | None = 15000
           ) -> tuple[np.ndarray, int]:
    """Procrustes refinement of ``w`` -> ``(W*, number of dictionary pairs last used)``.

    ``dictionary``: ``identical``, ``mutual_nn`` (rebuilt from the current map at each of
    ``iterations``) or the path of a ``speech_word text_word`` file; the fixed dictionaries
    need one iteration only.
    """
    pairs: list[tuple[int, int]] = []
    for _ in range(max(1, iterations) if dictionary == "mutual_nn" else 1):
        pairs = _dictionary(speech, text, w, speech_words, text_words, dictionary, max_pairs)
        if len(pairs) < 2:
            raise SertkError(f"refinement: dictionary {dictionary!r} has {len(pairs)} pairs; "
                             "need at least 2 (check the vocabularies or give a pairs file)")
        idx_s, idx_t = map(list, zip(*pairs))
        w = procrustes(speech[idx_s], text[idx_t])
    return w, len(pairs)


def _dictionary(speech: np.ndarray, text: np.ndarray, w: np.ndarray,
                speech_words: list[str] | None, text_words: list[str] | None,
                dictionary: str, max_pairs: int | None) -> list[tuple[int, int]]:
    if dictionary == "mutual_nn":
        return mutual_nn_dictionary(speech @ w.T, text, max_pairs or len(speech))
    if speech_words is None or text_words is None:
        raise SertkError(f"refinement: dictionary {dictionary!r} needs the word lists")
    if dictionary == "identical":
        return identical_dictionary(speech_words, text_words, max_pairs)
    return read_dictionary(dictionary, speech_words, text_words)[:max_pairs]


# ---------------------------------------------------------------- adversarial training


@dataclass
class AdversarialConfig:
    """Hyper-parameters of :func:`adversarial_map` (MUSE's defaults; not in the paper)."""

    epochs: int = 5
    iterations: int = 1000        # map steps per epoch
    batch_size: int = 32
    dis_steps: int = 5            # discriminator steps per map step
    hidden: int = 2048
    layers: int = 2
    input_dropout: float = 0.1
    dis_lr: float = 0.1
    map_lr: float = 0.1
    beta: float = 0.001           # orthogonalisation strength
    most_frequent: int = 75000    # the discriminator samples from these rows
    seed: int = 0


@dataclass
class AdversarialResult:
    w: np.ndarray
    dis_loss: list[float] = field(default_factory=list)   # mean L_D per epoch
    map_loss: list[float] = field(default_factory=list)   # mean L_G per epoch
    dis_accuracy: list[float] = field(default_factory=list)  # D's accuracy per epoch


class Discriminator(nn.Module):
    """MLP giving the logit of ``P(speech = 1 | x)``."""

    def __init__(self, dim: int, hidden: int = 2048, layers: int = 2,
                 input_dropout: float = 0.1):
        super().__init__()
        mods: list[nn.Module] = [nn.Dropout(input_dropout)]
        for i in range(layers):
            mods += [nn.Linear(dim if i == 0 else hidden, hidden), nn.LeakyReLU(0.2)]
        mods.append(nn.Linear(hidden if layers else dim, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def discriminator_loss(disc: nn.Module, mapped: torch.Tensor, text: torch.Tensor
                       ) -> torch.Tensor:
    """``L_D``: mapped speech is labelled speech (1), text is labelled 0."""
    zs, zt = disc(mapped), disc(text)
    return (F.binary_cross_entropy_with_logits(zs, torch.ones_like(zs))
            + F.binary_cross_entropy_with_logits(zt, torch.zeros_like(zt)))


def mapping_loss(disc: nn.Module, mapped: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``L_G``: the labels swapped (only the first term depends on ``W``)."""
    zs, zt = disc(mapped), disc(text)
    return (F.binary_cross_entropy_with_logits(zs, torch.zeros_like(zs))
            + F.binary_cross_entropy_with_logits(zt, torch.ones_like(zt)))


@torch.no_grad()
def orthogonalize(w: torch.Tensor, beta: float = 0.001) -> None:
    """MUSE's update ``W <- (1 + beta) W - beta (W W^T) W``, in place."""
    w.copy_((1 + beta) * w - beta * (w @ w.T) @ w)


def initial_map(speech_dim: int, text_dim: int) -> torch.Tensor:
    """Identity ``[E_t, E_s]`` (semi-orthogonal when the dimensions differ)."""
    return torch.eye(text_dim, speech_dim)


def adversarial_map(speech: np.ndarray, text: np.ndarray,
                    cfg: AdversarialConfig | None = None) -> AdversarialResult:
    """Learn ``W`` so that ``W S`` cannot be told from ``T`` (see the module docstring)."""
    cfg = cfg or AdversarialConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    s = torch.as_tensor(speech[:cfg.most_frequent], dtype=torch.float32)
    t = torch.as_tensor(text[:cfg.most_frequent], dtype=torch.float32)
    mapping = nn.Linear(s.shape[1], t.shape[1], bias=False)
    with torch.no_grad():
        mapping.weight.copy_(initial_map(s.shape[1], t.shape[1]))
    disc = Discriminator(t.shape[1], cfg.hidden, cfg.layers, cfg.input_dropout)
    opt_d = torch.optim.SGD(disc.parameters(), lr=cfg.dis_lr)
    opt_g = torch.optim.SGD(mapping.parameters(), lr=cfg.map_lr)
    result = AdversarialResult(w=mapping.weight.detach().numpy().copy())

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(len(s), (cfg.batch_size,), generator=gen)
        j = torch.randint(len(t), (cfg.batch_size,), generator=gen)
        return s[i], t[j]

    for _ in range(cfg.epochs):
        d_losses, g_losses, accs = [], [], []
        for _ in range(cfg.iterations):
            disc.train()
            for _ in range(cfg.dis_steps):
                sb, tb = batch()
                loss_d = discriminator_loss(disc, mapping(sb).detach(), tb)
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                d_losses.append(loss_d.item())
            sb, tb = batch()
            disc.eval()  # no input dropout while the map learns to fool D
            loss_g = mapping_loss(disc, mapping(sb), tb)
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            orthogonalize(mapping.weight, cfg.beta)
            g_losses.append(loss_g.item())
            accs.append(discriminator_accuracy(disc, mapping(sb).detach(), tb))
        result.dis_loss.append(float(np.mean(d_losses)))
        result.map_loss.append(float(np.mean(g_losses)))
        result.dis_accuracy.append(float(np.mean(accs)))
    result.w = mapping.weight.detach().numpy().copy()
    return result


@torch.no_grad()
def discriminator_accuracy(disc: nn.Module, mapped: torch.Tensor, text: torch.Tensor) -> float:
    """Share of mapped speech vectors called speech and text vectors called text."""
    disc.eval()
    hits = (disc(mapped) > 0).float().sum() + (disc(text) <= 0).float().sum()
    return float(hits) / (len(mapped) + len(text))


def learn_map(speech_words: list[str], speech: np.ndarray, text_words: list[str],
              text: np.ndarray, adversarial: AdversarialConfig | None = None,
              dictionary: str = "identical", refine_iterations: int = 5,
              max_pairs: int | None = 15000, normalize: bool = True
              ) -> tuple[np.ndarray, dict[str, object]]:
    """Adversarial training (skipped when ``adversarial`` is None; ``W`` starts at the
    identity) followed by Procrustes refinement -> ``(W*, summary)``."""
    if normalize:
        speech, text = normalize_rows(speech), normalize_rows(text)
    summary: dict[str, object] = {}
    if adversarial is not None:
        res = adversarial_map(speech, text, adversarial)
        w = res.w
        summary.update(dis_loss=res.dis_loss, map_loss=res.map_loss,
                       dis_accuracy=res.dis_accuracy)
    else:
        w = initial_map(speech.shape[1], text.shape[1]).numpy()
    if refine_iterations > 0:
        w, n = refine(speech, text, w, speech_words, text_words, dictionary,
                      refine_iterations, max_pairs)
        summary["dictionary_pairs"] = n
    summary["orthogonality_error"] = orthogonality_error(w)
    return w, summary
