# The two commands of the README: `make run` (install + serve on the demo upstream) and `make test`
# (install + every check and test). `.ci/run` calls `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck imports unit test-slow bench bench-extract bench-modifications clean sim-scale fuzz soak

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/ror-bridge serve

lint: install
	$(BIN)/ruff check bridge tests
	$(BIN)/ruff format --check bridge tests

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest

test: lint typecheck imports
	$(BIN)/ror-bridge mappings check
	$(BIN)/pytest

test-slow: install
	$(BIN)/pytest -m slow

# Pages/s of the national API client against the simulator (0 and 50 ms latency), as a ratio to bare httpx.
bench: install
	$(BIN)/python -m tests.bench.bench_paging

# GET /extraction at 100 000 and 1 000 000 offers: the bridge's peak RSS, duration, bytes (issue 6 item 3).
# Smaller: make bench-extract SCALES=10000,100000
SCALES ?= 100000,1000000
bench-extract: install
	$(BIN)/python -m tests.bench.bench_extract --scales $(SCALES)

# Changes since a date over the whole directory (every entity changed) at two sizes: the bridge's peak RSS
# stays flat. MOD_FUNCTION=iti74 (getModificationsRequest) or establishments (establishments-updated-since).
MOD_SCALES ?= 10000,40000
MOD_FUNCTION ?= iti74
bench-modifications: install
	$(BIN)/python -m tests.bench.bench_modifications --scales $(MOD_SCALES) --function $(MOD_FUNCTION)

# The ROR simulator at one million offers: start time, peak memory, request latency (README, issue 3 item 2).
sim-scale: install
	$(BIN)/python -m tests.simulator.scale --scale 1000000

# The property-based fuzzer of the CSD endpoint (tests/hostile/test_fuzz.py) with many more examples than the
# default run: FUZZ_EXAMPLES per property (default here 2000, a quarter of an hour or so on 2 cores).
FUZZ_EXAMPLES ?= 2000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/hostile/test_fuzz.py -q

# Sustained load (issue 15 item 8): SOAK_CLIENTS legacy clients over mTLS, every stored function and ITI-74,
# SOAP 1.1 and 1.2, against the simulator (30 ms, 2 % 503); SOAK_ROUNDS rounds of SOAK_ROUND_S seconds.
# Prints requests, errors beyond the injected faults, latency percentiles and the bridge's RSS growth.
SOAK_CLIENTS ?= 20
SOAK_ROUNDS ?= 3
SOAK_ROUND_S ?= 30
soak: install
	$(BIN)/python -m tests.bench.soak --clients $(SOAK_CLIENTS) --rounds $(SOAK_ROUNDS) --round-s $(SOAK_ROUND_S)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
