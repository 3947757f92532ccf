"""Rounded shapes (bioprune.shapes): few distinct shapes, little padding, the rows themselves kept."""
import torch

from bioprune.shapes import bucketed_rows, bucketed_tokens, padded_rows


def test_row_counts_land_on_a_coarse_grid_with_little_padding():
    rounded = [bucketed_rows(m) for m in range(1, 8193)]  # every packed batch of 16 x 512 tokens or less
    assert all(r >= m for m, r in zip(range(1, 8193), rounded))
    assert all(bucketed_rows(r) == r for r in rounded)  # on the grid: rounding again changes nothing
    # oneDNN compiles one kernel per shape and caches 1024: a Linear layer must not bring hundreds
    assert len(set(rounded)) <= 150
    assert max((r - m) / m for m, r in zip(range(1024, 8193), rounded[1023:])) <= 1 / 16  # a batch pads <= 6.25%
    assert max(r - m for m, r in zip(range(1, 513), rounded)) <= 31  # one window alone: under a 32-row step


def test_sequence_lengths_round_to_multiples_of_32():
    assert [bucketed_tokens(n) for n in (1, 31, 32, 33, 300, 512)] == [32, 32, 32, 64, 320, 512]
    assert len({bucketed_tokens(n) for n in range(1, 513)}) == 16


def test_padded_rows_appends_zero_rows_and_keeps_a_tensor_on_the_grid():
    x = torch.randn(300, 8)
    padded = padded_rows(x)
    assert padded.shape == (320, 8) and torch.equal(padded[:300], x) and not padded[300:].any()
    on_grid = torch.randn(320, 8)
    assert padded_rows(on_grid) is on_grid
