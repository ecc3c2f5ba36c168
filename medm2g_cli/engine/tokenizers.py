"""Tokenizers: trained on the user's reports with the ``tokenizers`` library when no pretrained
BERT/GPT-2/CLIP folder is given, loaded as transformers ``PreTrainedTokenizerFast``.

The trained tokenizer is a lower-casing byte-level BPE (no unknown tokens, any text round-trips)
with ``<s> ... </s>`` added around every encoded text. The end token is deliberately not id 2:
transformers' CLIP text model treats ``eos_token_id == 2`` as a legacy config and pools at the
largest id instead of the end token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<mask>", "<s>", "</s>")

# Used when a model is created without training texts: enough radiology vocabulary for the
# tiny/small presets to form real merges. Real runs pass the training reports.
DEFAULT_CORPUS: tuple[str, ...] = (
    "The lungs are clear. No pleural effusion or pneumothorax.",
    "Heart size is normal. The mediastinal contour is within normal limits.",
    "There is a right lower lobe opacity concerning for pneumonia.",
    "Mild cardiomegaly. Small left pleural effusion with adjacent atelectasis.",
    "No acute cardiopulmonary abnormality. Osseous structures are intact.",
    "Axial CT of the head shows no intracranial hemorrhage or mass effect.",
    "T1 weighted MRI of the brain with a ring enhancing lesion and surrounding edema.",
    "T2 and FLAIR hyperintensity in the white matter. Proton density image.",
    "Chest radiograph, frontal view. Lines and tubes in standard position.",
    "Unchanged nodule in the left upper lobe measuring 5 mm.",
    "abcdefghijklmnopqrstuvwxyz 0123456789 .,;:()-/%",
)


def train_tokenizer(texts: Iterable[str] | None = None, vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (the built-in corpus when None)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    corpus = list(texts) if texts is not None else list(DEFAULT_CORPUS)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=512,
    )


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """Load a tokenizer folder (offline only); any fast tokenizer class saved there works."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token is None:  # GPT-2 has no pad token; padding positions are masked anyway
        tok.pad_token = tok.eos_token
    # AutoTokenizer is typed as fast-or-sentencepiece; the folders we load hold fast tokenizers
    return cast(PreTrainedTokenizerFast, tok)
