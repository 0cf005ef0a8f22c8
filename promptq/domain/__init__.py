"""The domain: promptq's decisions, pure (no I/O, no clock of their own, type-checked). Each
takes documents as they are and returns what to write (``records.Change``); the adapters apply
it. It imports only the contract (a house rule: tests/tools/test_layout.py)."""
