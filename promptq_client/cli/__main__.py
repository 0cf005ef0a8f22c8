import sys

from promptq_client.cli import main

sys.exit(main())
