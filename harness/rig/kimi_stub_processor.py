"""A text-only stand-in for Kimi-K2.5's remote-code processor, copied into the rig's KimiK25 checkpoints as
`processing_kimi_stub.py`: SGLang 0.5.17 builds Kimi's multimodal processor for every KimiK25 checkpoint (its
`enable_multimodal` has no off switch) and reads the media settings of the HF processor."""

from types import SimpleNamespace

from transformers import PreTrainedTokenizerFast


class KimiStubProcessor:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.image_processor = None
        self.media_processor = SimpleNamespace(media_proc_cfg={
            "patch_size": 14, "merge_kernel_size": [2, 2], "in_patch_limit": 4096, "patch_limit_on_one_side": 64,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoProcessor"):
        """transformers registers every remote-code processor it loads; nothing to register here."""

    @classmethod
    def from_pretrained(cls, path, *args, **kwargs):
        return cls(PreTrainedTokenizerFast.from_pretrained(path))

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)
