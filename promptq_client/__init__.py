"""promptq's Python client (not deployed): call the functions, follow an execution.

    from promptq_client import Client
    client = Client(functions_url=..., project_id=..., web_api_key=...)
    user = client.sign_in(email, password, create=False)
    execution_id = client.start(user, prompt="Hello")
    answer = client.poll(user, execution_id, after=0)   # PollAnswer: text, offset, status, ...

The ``promptq`` command is ``promptq_client.cli``; ``promptq_client.stackenv`` reads the local
stack's endpoints.
"""

from promptq_client.api import CallError, Client, User

__all__ = ["CallError", "Client", "User"]
