# promptq: the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
PY := venv/bin/python
REGION ?= us-central1

.PHONY: setup up down status demo test test-unit bench bench-cancel bench-bytes bench-capacity bench-batch bench-throttle bench-fairness bench-scale load web web-schema clean deploy deploy-plan

setup:                ## install everything (idempotent): venvs, npm packages
	@bash scripts/setup.sh

up: setup             ## start the local stack in the background; endpoints in .stack/env (FUNCTIONS=emulator: the Functions emulator serves main.py)
	@$(PY) -m devstack.stack up $(if $(FUNCTIONS),--functions $(FUNCTIONS))

down:                 ## stop everything `up` started
	@if [ -x $(PY) ]; then $(PY) -m devstack.stack down; else echo "stack: nothing to stop (no venv)"; fi

status:
	@$(PY) -m devstack.stack status

demo: setup           ## up, run one prompt through the callable and watch it arrive, down
	@$(PY) -m devstack.demo

test: setup           ## the whole test suite (starts and stops the stack itself; the tests that need no stack run beside it)
	@bash scripts/test.sh

test-unit: setup      ## only the tests that need no emulator
	@$(PY) -m pytest tests/unit tests/tools

bench: setup          ## latency / staleness / writes benchmark on the local stack
	@$(PY) -m bench.pipeline

bench-cancel: setup   ## Stop latency: cancelled mid-stream -> cancelled, p95 over 20 runs
	@$(PY) -m bench.cancel --fresh

bench-bytes: setup    ## bytes a watcher downloads per execution vs the answer's size (table + bench/results/bytes.png)
	@$(PY) -m bench.bytes

bench-capacity: setup ## one worker process at 10/40/80/160 streams (and 160 on two; 80 through the stack): staleness, CPU, RSS (bench/results/capacity.png)
	@$(PY) -m bench.capacity

bench-batch: setup    ## 1,000 prompts as one batch vs a direct asyncio loop; the discounted lane's cost and 5,000 results' delay (bench/results/batch.png, discounted.png)
	@$(PY) -m bench.batch

bench-throttle: setup ## 1,000 prompts, 40 lanes, into a 60-s storm of 429s: no item fails, one probe per Retry-After, delayed by the storm only (bench/results/throttle.png)
	@$(PY) -m bench.throttle

bench-fairness: setup ## fair share: interactive first-visible p95 idle vs under two users' batches, batch lanes busy (bench/results/fairness.png)
	@$(PY) -m bench.fairness

bench-scale: setup    ## production's limits: every write recorded on a modeled mix, projected to 1,000 starts/s and 10,000 streams (ARGS="--target-multiplier 10"; bench/results/scale.*)
	@$(PY) -m bench.scale $(ARGS)

load: setup           ## 1,000 executions through the callable; checks nothing lost, stuck or garbled
	@$(PY) -m bench.load

web: up               ## serve the web page on http://127.0.0.1:5173/ against the local stack (Ctrl-C stops it)
	@$(PY) web/serve.py --port 5173

web-schema:           ## regenerate packages/web/src/schema.js (@promptq/web's names; web/schema.js links to it) from promptq/contract (a test fails when they drift)
	@$(PY) -m devstack.schema_js > packages/web/src/schema.js

deploy:               ## deploy to a Firebase project on Blaze, idempotently: make deploy PROJECT=<id> [REGION=us-central1] [SET="KEY=VALUE ..."]
	@[ -x $(PY) ] || { echo "deploy: no virtual environment: run make setup" >&2; exit 2; }
	@$(PY) -m infra.deploy apply --project "$(PROJECT)" --region "$(REGION)" $(foreach s,$(SET),--set '$(s)')

deploy-plan:          ## print the commands `make deploy` runs, in order, offline: make deploy-plan PROJECT=<id> [REGION=...]
	@[ -x $(PY) ] || { echo "deploy: no virtual environment: run make setup" >&2; exit 2; }
	@$(PY) -m infra.deploy plan --project "$(PROJECT)" --region "$(REGION)" $(foreach s,$(SET),--set '$(s)')

clean: down
	rm -rf .stack
