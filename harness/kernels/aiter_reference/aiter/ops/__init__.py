"""Reference aiter (harness): only the modules SGLang's MXFP4 paths import; see aiter/__init__.py."""
