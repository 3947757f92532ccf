"""Pruning-aware fine-tuning (training/prune_aware.py): the pruned step is the real forward with tokens removed."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification

from bioprune.labels import IGNORE_INDEX
from training.prune_aware import PruneAwareConfig, at_kept, leaving_candidates, pruned_forward, step_forward


@pytest.fixture
def model(tiny_model_dir):
    return AutoModelForTokenClassification.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture
def batch(model) -> dict[str, torch.Tensor]:
    """Two sequences of 9 and 6 tokens ([CLS] and [SEP] included), right-padded, with random labels."""
    g, lengths = torch.Generator().manual_seed(0), (9, 6)
    B, T = len(lengths), max(lengths)
    ids = torch.randint(5, model.config.vocab_size, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    labels = torch.randint(0, 5, (B, T), generator=g)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        labels[b, 0] = labels[b, n - 1] = IGNORE_INDEX  # [CLS], [SEP]
        labels[b, n:] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pruned_loss(model, input_ids, attention_mask, labels, leave, layer) -> torch.Tensor:
    """Cross-entropy on the kept tokens (what the trainer's loss does for a fully annotated corpus)."""
    logits, kept = pruned_forward(model, input_ids, attention_mask, leave, layer)
    gold = at_kept(labels, kept, IGNORE_INDEX)
    return F.cross_entropy(logits.flatten(0, 1), gold.flatten(), ignore_index=IGNORE_INDEX)


def test_nothing_leaving_gives_the_dense_loss(model, batch):
    with torch.no_grad():
        dense = model(**batch).loss
        pruned = pruned_loss(model, **batch, leave=torch.zeros_like(batch["labels"], dtype=torch.bool), layer=1)
    assert torch.allclose(dense, pruned, atol=1e-5)


def test_removed_tokens_are_out_of_the_loss_and_the_context(model, batch):
    leave = torch.zeros_like(batch["labels"], dtype=torch.bool)
    leave[0, 3:6] = True
    # changing the removed tokens' labels changes nothing: they are not scored
    other = dict(batch, labels=batch["labels"].clone())
    other["labels"][0, 3:6] = (other["labels"][0, 3:6] + 1) % 5
    with torch.no_grad():
        assert torch.equal(pruned_loss(model, **batch, leave=leave, layer=1),
                           pruned_loss(model, **other, leave=leave, layer=1))
        # removed before the first layer they leave no trace: their ids do not matter; after it they do
        swapped = dict(batch, input_ids=batch["input_ids"].clone())
        swapped["input_ids"][0, 3:6] = 7
        a = pruned_loss(model, **batch, leave=leave, layer=0)
        b = pruned_loss(model, **swapped, leave=leave, layer=0)
        c = pruned_loss(model, **swapped, leave=leave, layer=1)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(pruned_loss(model, **batch, leave=leave, layer=1).detach(), c, atol=1e-6)


def test_candidates_never_special_or_padding(model, batch):
    every = leaving_candidates(model, batch["input_ids"], batch["attention_mask"], batch["labels"], confident_o=0.0)
    assert torch.equal(every, batch["labels"] != IGNORE_INDEX)
    assert not leaving_candidates(model, batch["input_ids"], batch["attention_mask"], batch["labels"], 1.01).any()


def test_step_forward_dense_when_off_and_pruned_when_on(model, batch):
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        dense, kept = step_forward(model, ids, mask, labels, None, g)
        assert kept is None and torch.equal(dense, model(input_ids=ids, attention_mask=mask).logits)
        always = PruneAwareConfig(layers=(1,), step_probability=1.0, confident_o=0.0, min_leave_share=1.0)
        logits, kept = step_forward(model, ids, mask, labels, always, g)
    positions, valid = kept
    assert logits.shape[1] < ids.shape[1] and logits.shape[:2] == positions.shape
    # every content token left: only [CLS] and [SEP] stay, and their labels are gathered with them
    assert valid.sum(1).tolist() == [2, 2]
    assert (at_kept(labels, kept, IGNORE_INDEX)[valid] == IGNORE_INDEX).all()


def test_at_kept_gathers_per_row_and_fills_the_short_rows():
    x = torch.arange(12.0).reshape(2, 3, 2)  # (B, T, C)
    kept = (torch.tensor([[0, 2], [1, 0]]), torch.tensor([[True, True], [True, False]]))
    assert at_kept(x, kept, -1.0).tolist() == [[[0, 1], [4, 5]], [[8, 9], [-1, -1]]]
    assert at_kept(x, None, -1.0) is x
