"""Fixtures of the cross-distribution tests: see the root ``conftest.py`` (``local_llm``, ``embedder``,
``locomo6``, hermetic caches) and ``tests/helpers.py`` (shared data, plumbing fakes).

Tests marked ``llm`` use the real embedded local model (Qwen2.5-Coder-0.5B
through llama.cpp); they run in CI. Everything else is fast plumbing.
"""
