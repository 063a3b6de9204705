# The two commands of the README: `make run` (install + serve on the demo upstream) and `make test`
# (install + every check and test). `.ci/run` calls `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint typecheck imports unit test-slow bench bench-extract bench-modifications clean sim-scale interop-install interop nginx fuzz soak
.PHONY: browser bench-compare bench-collect bench-translate compiled clean-compiled

# `make test` installs everything (extra `dev`); `make run` only what serving the demo needs (extra `demo`),
# unless the full install is already there. pip shows what it downloads and installs (no -q).
RUN_STAMP := $(VENV)/.run-stamp

$(STAMP): pyproject.toml constraints.txt
	@echo "== installing the bridge with its development tools into $(VENV) (first time: 1-3 minutes)"
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt
	@echo "== installing the bridge and its demo upstream into $(VENV) (first time: about a minute)"
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -c constraints.txt -e '.[demo]'
	touch $(RUN_STAMP)

install: $(STAMP)

run: $(if $(wildcard $(STAMP)),$(STAMP),$(RUN_STAMP))
	$(BIN)/ror-bridge serve

lint: install
	$(BIN)/ruff check bridge tests
	$(BIN)/ruff format --check bridge tests

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

# The default run spreads the test files over TEST_PROCESSES pytest processes (pytest-xdist; a file's tests stay
# in one process, in order): 2, the reference machine's cores. TEST_PROCESSES=0 runs them all in this process.
# A plain `pytest tests/…` runs in one process.
TEST_PROCESSES ?= 2
PYTEST_PROCESSES := -n $(TEST_PROCESSES) --dist loadfile

unit: install
	$(BIN)/pytest $(PYTEST_PROCESSES)

# nginx (Debian package) for the `nginx -t` check of docker/nginx/nginx.conf; best effort: without it (no
# root, no apt-get) that one test is skipped and says why.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light >/dev/null 2>&1 || \
	    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light >/dev/null; }; }; \
	} || echo "nginx could not be installed: the nginx -t check of docker/nginx will be skipped"

test: lint typecheck imports interop-install nginx
	$(BIN)/ror-bridge mappings check
	$(BIN)/pytest $(PYTEST_PROCESSES)

test-slow: install interop-install
	$(BIN)/pytest -m slow $(PYTEST_PROCESSES)

# The SOAP stacks of the interop lab (Debian packages + the pinned npm package `soap`); a no-op when present,
# needs root otherwise (README "Interop lab"). `make interop` runs the lab alone, slow stacks included.
interop-install:
	sh tests/interop/install.sh

interop: install interop-install
	$(BIN)/pytest tests/interop -m '' -v

# Every issue-13 figure against its target in one run (~15-20 min on 2 cores; tests/bench/suite.py): translation
# vs its physical limit, the offer-search's bridge CPU, collection speed-ups (12 000 offers, 100 ms), workers,
# uvloop/httptools, msgspec when installed, the client's paging ratio; one table at the end with the load
# average. A report: exits 0 whatever the targets, 1 when a benchmark broke. Parts: make bench BENCH_ONLY=paging
# (translate, serve, collect, workers, compiled, decode, paging, national). The paging bench alone:
# python -m tests.bench.bench_paging
BENCH_ONLY ?=
bench: install
	$(BIN)/python -m tests.bench.suite $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

# The translation hot path and the serving CPU (issue 13 items 1-2): the offre complète of 3 000 offers → CSD
# against orjson + a bare lxml writer (in process and as processes), and an offer-search's bridge CPU.
bench-translate: install
	$(BIN)/python -m tests.bench.bench_translate

# GET /extraction at 100 000 and 1 000 000 offers: the bridge's peak RSS, duration, bytes (issue 6 item 3).
# Smaller: make bench-extract SCALES=10000,100000
SCALES ?= 100000,1000000
bench-extract: install
	$(BIN)/python -m tests.bench.bench_extract --scales $(SCALES)

# A national collection (issue 13 item 3): partitioned searches and $export through FhirClient, each as a
# speed-up over a sequential next-link walk of the same searches, same run; the simulator as its own process
# with COLLECT_LATENCY_MS per request. Smaller: make bench-collect COLLECT_SCALE=12000
COLLECT_SCALE ?= 40000
COLLECT_LATENCY_MS ?= 100
bench-collect: install
	$(BIN)/python -m tests.bench.bench_collect --scale $(COLLECT_SCALE) --latency-ms $(COLLECT_LATENCY_MS)

# Changes since a date over the whole directory (every entity changed) at two sizes: the bridge's peak RSS
# stays flat. MOD_FUNCTION=iti74 (getModificationsRequest) or establishments (establishments-updated-since).
MOD_SCALES ?= 10000,40000
MOD_FUNCTION ?= iti74
bench-modifications: install
	$(BIN)/python -m tests.bench.bench_modifications --scales $(MOD_SCALES) --function $(MOD_FUNCTION)

# The ROR simulator at one million offers: start time, peak memory, request latency (README, issue 3 item 2).
sim-scale: install
	$(BIN)/python -m tests.simulator.scale --scale 1000000

# Headless Chromium for the report.html browser test (Debian package; Playwright drives it, never downloads one).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium >/dev/null) || echo "no Chromium could be installed: the browser test is skipped"

test: browser

# `ror-bridge compare documents` on two extractions at each of COMPARE_SCALES offers (one with injected
# differences): peak RSS and entities per second against a bare lxml iterparse pass, and the peak RSS curve
# across the scales (README, "Comparison"). Documents cached in build/bench-compare/; at nice 19 (shared CPU).
# Smaller: make bench-compare COMPARE_SCALES=10000,100000
COMPARE_SCALES ?= 10000,100000,1000000
bench-compare: install
	nice -n 19 $(BIN)/python -m tests.bench.bench_compare --scales $(COMPARE_SCALES)
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

# `serve --workers 2` against `--workers 1`, and uvloop + httptools against asyncio + h11, on the offer-search
# answering 50 offers at concurrency 10 (issue 13 items 5 and 6; README "Several workers and instances").
.PHONY: bench-workers
bench-workers: install
	$(BIN)/python -m tests.bench.bench_workers

# The mapping engine and the CSD writer compiled by mypyc, in place (a C compiler needed; about a minute): a
# translation takes ~20 % less CPU (README "Compiled hot path"). The bridge loads the build only while it matches
# its sources (an edited module runs interpreted until the next `make compiled`); `make clean-compiled` removes it.
compiled: install
	$(BIN)/python -c "from bridge import hot_path; raise SystemExit(hot_path.main(['build']))"

clean-compiled:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY)) -c "from bridge import hot_path; raise SystemExit(hot_path.main(['clean']))"

clean: clean-compiled
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
