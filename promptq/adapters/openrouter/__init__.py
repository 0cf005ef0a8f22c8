"""Everything that speaks OpenRouter's HTTP API: the worker's streaming client (``upstream``),
the protocol around the stream (``protocol``: the request body, what an error status means, the
generation record), the SSE reader (``stream``: events in, typed events out), tool calls
assembled from their pieces (``toolcalls``), and what the callables ask (``calls``: models,
keys, generations)."""
