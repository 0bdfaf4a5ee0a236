"""Fixed-length windows over an utterance, for segment-level training and test-time averaging
(Li et al. 2018; Xu et al. 2021: 2 s windows, 1 s hop in training, 0.4 s hop at test)."""

from __future__ import annotations


def windows(num_frames: int, length: int, shift: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``num_frames``: windows of ``length`` every ``shift``,
    the last one moved back to end at the utterance's end. An utterance no longer than
    ``length`` is one window (itself)."""
    if length <= 0 or shift <= 0:
        raise ValueError("window length and shift must be positive")
    if num_frames <= length:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - length + 1, shift))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(s, s + length) for s in starts]
