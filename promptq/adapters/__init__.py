"""The adapters: the only code that speaks to Firestore (the repositories, which own every
query and every compare-and-set), Cloud Tasks (``tasks``) and OpenRouter (``openrouter``). They
import the domain and the contract, never the callables or the worker (tests/tools/test_layout.py)."""
