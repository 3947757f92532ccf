"""Token importance signals and recovery triggers on hand-made tensors."""
import math

import torch

from bioprune.config import PruningConfig
from bioprune.layer import _attention_with_signals
from bioprune.importance import neighbourhood_max
from bioprune.forward import recovery_triggers


def _attention(scores, valid):
    """Run the engine's eager attention (with signals) on given (B, nh, T, T) scores: q = scores, k = I."""
    B, H, T, _ = scores.shape
    k = torch.eye(T).expand(B, H, T, T).contiguous()
    v = torch.randn(B, H, T, 4)
    return _attention_with_signals(scores, k, v, valid)


def test_uniform_attention_has_entropy_one_and_uniform_share():
    B, H, T = 2, 3, 5
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 3:] = False  # padding keys are sliced off: the real ones share the attention
    _, (entropy, received) = _attention(torch.zeros(B, H, T, T), valid)
    assert torch.allclose(entropy[0], torch.ones(T), atol=1e-6)
    assert torch.allclose(entropy[1, :3], torch.ones(3), atol=1e-6)
    assert torch.all(entropy[1, 3:] == 0) and torch.all(received[1, 3:] == 0)
    # every real key gets the uniform share from the real queries: sums to 1
    assert torch.allclose(received[0], torch.ones(T), atol=1e-6)
    assert torch.allclose(received[1, :3], torch.ones(3), atol=1e-6)


def test_one_hot_attention_marks_a_hub_with_zero_entropy():
    T = 4
    scores = torch.zeros(1, 2, T, T)
    scores[..., 2] = 100.0  # everyone looks at token 2
    _, (entropy, received) = _attention(scores, torch.ones(1, T, dtype=torch.bool))
    assert torch.allclose(entropy, torch.zeros(1, T), atol=1e-4)
    assert torch.allclose(received[0], torch.tensor([0.0, 0.0, float(T), 0.0]), atol=1e-4)


def test_signals_match_the_textbook_entropy_and_padding_changes_nothing():
    torch.manual_seed(0)
    H, T, n = 3, 7, 5
    scores = torch.randn(1, H, T, T) * 3
    valid = torch.zeros(1, T, dtype=torch.bool)
    valid[0, :n] = True
    context, (entropy, received) = _attention(scores, valid)
    probs = scores[0, :, :n, :n].softmax(dim=-1)  # (H, n, n)
    expected = torch.special.entr(probs).sum(dim=-1).mean(dim=0) / math.log(n)
    assert torch.allclose(entropy[0, :n], expected, atol=1e-5)
    assert torch.allclose(received[0, :n], probs.sum(dim=1).mean(dim=0), atol=1e-5)
    assert torch.all(context[0, :, n:] == 0)


def test_neighbourhood_max_excludes_the_token_itself():
    x = torch.tensor([[0.0, 0.9, 0.0, 0.0, 0.5]])
    assert torch.equal(neighbourhood_max(x, 1), torch.tensor([[0.9, 0.0, 0.9, 0.5, 0.0]]))
    assert torch.equal(neighbourhood_max(x, 2), torch.tensor([[0.9, 0.0, 0.9, 0.9, 0.0]]))
    assert torch.all(neighbourhood_max(x, 0) == 0)


def _probs(labels, confident=0.99):
    """(1, T, 5) probabilities putting ``confident`` on each token's label."""
    out = torch.full((1, len(labels), 5), (1 - confident) / 4)
    for i, label in enumerate(labels):
        out[0, i, label] = confident
    return out


def test_entity_loss_fires_for_a_pruned_token_next_to_a_kept_entity():
    probs = _probs([0, 0, 1, 0, 0, 0, 0])  # token 2 is B-Chemical
    pruned = torch.tensor([[False, False, False, True, False, False, True]])
    valid = torch.ones_like(pruned)
    config = PruningConfig(loss_next_to_entity=True, recovery_window_tokens=0, spike_entropy_nats=10.0)
    triggers = recovery_triggers(probs, pruned, valid, config)
    off = PruningConfig(loss_next_to_entity=False, recovery_window_tokens=0, spike_entropy_nats=10.0)
    assert not recovery_triggers(probs, pruned, valid, off)["entity_loss"].any()
    assert triggers["entity_loss"].tolist() == [[False, False, False, True, False, False, False]]
    assert not triggers["entropy_spike"].any()


def test_entity_loss_fires_for_a_pruned_token_that_still_looks_like_an_entity():
    probs = _probs([0, 0, 0, 0])
    probs[0, 1] = torch.tensor([0.8, 0.2, 0.0, 0.0, 0.0])  # exit head: p(entity) = 0.2
    pruned = torch.tensor([[False, True, False, False]])
    config = PruningConfig(loss_entity_prob=0.1, recovery_window_tokens=0, spike_entropy_nats=10.0)
    assert recovery_triggers(probs, pruned, torch.ones_like(pruned), config)["entity_loss"][0, 1]
    calm = PruningConfig(loss_entity_prob=0.3, recovery_window_tokens=0, spike_entropy_nats=10.0)
    assert not recovery_triggers(probs, pruned, torch.ones_like(pruned), calm)["entity_loss"].any()


def test_entropy_spike_recovers_pruned_tokens_near_an_uncertain_kept_token():
    probs = _probs([0] * 6)
    probs[0, 2] = torch.full((5,), 0.2)  # kept token 2 is maximally uncertain: entropy log 5
    pruned = torch.tensor([[False, True, False, False, True, True]])
    config = PruningConfig(spike_entropy_nats=math.log(5) - 0.01, recovery_window_tokens=2, spike_min_tokens=1)
    spike = recovery_triggers(probs, pruned, torch.ones_like(pruned), config)["entropy_spike"]
    assert spike.tolist() == [[False, True, False, False, True, False]]  # within 2 of token 2, pruned only


def test_entropy_spike_needs_spike_min_tokens_uncertain_tokens_in_the_sequence():
    probs = _probs([0] * 8).repeat(2, 1, 1)  # (2, 8, 5)
    probs[0, 2] = probs[1, 2] = probs[1, 5] = torch.full((5,), 0.2)  # row 0: one uncertain token, row 1: two
    pruned = torch.tensor([[False, True, False, False, False, False, True, False]]).repeat(2, 1)
    config = PruningConfig(spike_entropy_nats=math.log(5) - 0.01, recovery_window_tokens=1, spike_min_tokens=2)
    spike = recovery_triggers(probs, pruned, torch.ones_like(pruned), config)["entropy_spike"]
    assert spike.tolist() == [[False] * 8, [False, True, False, False, False, False, True, False]]
    one = recovery_triggers(probs, pruned, torch.ones_like(pruned), config.with_(spike_min_tokens=1))["entropy_spike"]
    assert one[0].tolist() == [False, True] + [False] * 6


def test_controller_features_of_a_sequence_do_not_depend_on_the_padding_after_it():
    """A sequence's controller features are the same alone and padded in a batch, whatever the exit
    head says at the padding positions."""
    from bioprune.controllers import controller_features
    from bioprune.importance import token_signals

    torch.manual_seed(0)
    n, pad, H, C = 6, 3, 8, 5
    logits = torch.randn(1, n, C)
    hidden = torch.randn(1, n, H)
    alone = token_signals(None, logits, torch.ones(1, n, dtype=torch.bool), hidden,
                          torch.arange(n)[None], torch.tensor([n]), 0.5)
    entity_at_padding = torch.tensor([-9.0, 9.0, 0.0, 0.0, 0.0]).expand(1, pad, C)  # p(entity) ~ 1 there
    padded = token_signals(None, torch.cat([logits, entity_at_padding], dim=1),
                           torch.cat([torch.ones(1, n, dtype=torch.bool), torch.zeros(1, pad, dtype=torch.bool)], dim=1),
                           torch.cat([hidden, torch.zeros(1, pad, H)], dim=1), torch.arange(n + pad)[None],
                           torch.tensor([n]), 0.5)
    assert torch.equal(controller_features(alone)[0], controller_features(padded)[0, :n])
