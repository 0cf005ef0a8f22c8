"""What the callables accept, as pydantic models (``request``; their parts: ``fields``,
``messages``: content parts and tool calls, ``vocabulary``: response_format, reasoning, provider,
tools; ``jsonschemas``: a schema's dialect). Every refusal names its field. The server's side of
the contract: the pip package ships the names (``promptq.contract``), not these (they need
jsonschema)."""
