# Two commands do everything: `make book` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JB := $(BIN)/jupyter-book

.PHONY: book test notebooks lab clean venv unit bench data portability

# Notebooks run on the kernel `make venv` installs (metarec_ref/numerics.py): in the pinned mode,
# the same digits on any x86-64 CPU. These targets make or check committed outputs, so they pin
# whatever METAREC_NUMERICS says; `make lab` leaves it to you (native: full speed, other digits).
book test notebooks portability: export METAREC_NUMERICS := pinned
NBVAL := -p tests.nbval_plugin --nbval --nbval-kernel-name python3 --nbval-sanitize-with tests/nbval_sanitize.cfg

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# Re-install only when the dependency list or the kernel changes.
$(STAMP): pyproject.toml metarec_ref/numerics.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m metarec_ref.numerics install
	touch $(STAMP)

venv: $(STAMP)

# UCI Online Retail for chapters 1 and 7: download once into the user cache, convert to Parquet,
# verify rows and checksum (data/README.md; METAREC_DATA_URL, METAREC_CACHE_DIR override).
data: $(STAMP)
	$(BIN)/python -c "from metarec_ref.data.fetch import main; raise SystemExit(main())"

# First fetch the real data if it is missing, best effort: offline, or when the download fails its
# check, it says so and the chapters whose data is absent keep their committed outputs.
book: $(STAMP)
	$(BIN)/python -c "from metarec_ref.data.fetch import main; main(['--best-effort'])"
	mkdir -p _build
	$(BIN)/python -c "import sys; from metarec_ref.book import book_config; sys.stdout.write(book_config())" \
		> _build/_config_book.yml
	METAREC_QUIET=1 $(JB) build . --path-output . --config _build/_config_book.yml --toc _toc.yml

# Library tests, papermill runs, README commands and strict nbval of every chapter in one pytest
# run on two workers (a notebook's cells stay together on one worker). Beside it, independent of it,
# the book tier: the book from the committed outputs, strict (a broken reference or a missing file
# fails), then that book as a reader offline sees it: headless Chromium loads every page with all
# other hosts blocked and checks formulas, images, links and glued values (screenshots go to
# _build/screenshots). Its log is printed when pytest is done; make test fails if either tier fails.
test: $(STAMP)
	mkdir -p _build
	rm -rf _build/screenshots
	sed 's/execute_notebooks: cache/execute_notebooks: "off"/' _config.yml > _build/_config_committed.yml
	( $(JB) build . --path-output _build/committed --config _build/_config_committed.yml \
		--toc _toc.yml -W -n --keep-going --all \
	  && METAREC_BOOK_HTML=_build/committed/_build/html METAREC_SCREENSHOTS=_build/screenshots \
		$(BIN)/python -m pytest -p no:cacheprovider tests/browser ) > _build/book_tier.log 2>&1 & book=$$!; \
	METAREC_QUIET=1 $(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile -rs $(NBVAL) tests notebooks; \
	tests=$$?; wait $$book; book_status=$$?; \
	echo "--- book tier (strict build from the committed outputs, then the browser checks) ---"; \
	cat _build/book_tier.log; \
	echo "pytest tier: exit $$tests; book tier: exit $$book_status"; \
	test $$tests -eq 0 && test $$book_status -eq 0

# The quick loop: tests marked slow (more than a few seconds each) run in `make test` only.
unit: $(STAMP)
	METAREC_QUIET=1 $(BIN)/python -m pytest -p no:cacheprovider tests/unit -q -m "not slow"

# Re-execute every chapter in place on the pinned kernel (committed outputs: CPU, no progress bars;
# set METAREC_DATA_DIR so the real-data chapters run too), NOTEBOOK_JOBS at a time (each kernel
# uses one thread). The tour and the closing chapter read the other chapters' results: they run last.
NOTEBOOK_JOBS ?= 2
LAST_NOTEBOOKS := notebooks/00_tour.ipynb notebooks/11_when_does_it_help.ipynb
EXECUTE := env METAREC_QUIET=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	--ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=1800
notebooks: $(STAMP)
	ls notebooks/*.ipynb | grep -v -x -F $(addprefix -e ,$(LAST_NOTEBOOKS)) | xargs -P $(NOTEBOOK_JOBS) -n 1 $(EXECUTE)
	for nb in $(wildcard $(LAST_NOTEBOOKS)); do $(EXECUTE) $$nb || exit 1; done

# Strict nbval of every chapter with the kernel on processors emulated by qemu-x86_64
# (tests/portability.py): run it before committing executed notebooks (about ten times slower).
# `make test` checks the library's fingerprint and chapter 4 that way.
portability: $(STAMP)
	METAREC_QUIET=1 $(BIN)/python -m tests.portability notebooks/*.ipynb

bench: $(STAMP)
	PYTHON=$(BIN)/python benchmarks/run_all.sh

lab: $(STAMP)
	$(BIN)/jupyter lab

clean:
	rm -rf _build .pytest_cache .jupyter_cache
