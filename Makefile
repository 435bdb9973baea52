# The README's two commands: `make run` and `make test`.  Everything they need is installed
# here, apt packages included (CI runs as root on a fresh machine).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MAILPLANE := $(VENV)/bin/mailplane
STAMP := $(VENV)/.installed

# Real daemons the test suite starts itself (clamd, spamd, Dovecot) and the browser for the
# portal tests.  Installed with apt when missing and we are root; tests that need a missing
# one skip with the reason printed.
APT_PACKAGES := clamav-daemon clamav spamassassin spamd spamc dovecot-pop3d chromium fonts-ipafont-gothic

.PHONY: run test lint typecheck venv apt-deps migrate seed clean bench bench-quick soak

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "apt: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "apt: missing$$missing and not root; tests that need them will skip"; \
	  fi; \
	fi

run: $(STAMP)
	mkdir -p var
	$(MAILPLANE) migrate
	$(MAILPLANE) seed-demo
	$(MAILPLANE) serve

lint: $(STAMP)
	$(VENV)/bin/ruff check mailplane tests $(wildcard bench)
	$(VENV)/bin/mypy --strict mailplane
	$(VENV)/bin/lint-imports

test: $(STAMP) apt-deps lint
	$(VENV)/bin/pytest -q -ra

# Throughput and latency against baselines measured in the same run (docs/performance.md).
# Debian's postfix gives the Postfix column (a private instance the bench starts itself,
# bench/postfix.py), smtp-sink (the ceiling) and smtp-source (an optional client).  It is
# installed as "No configuration", so the package never configures or starts a system
# instance on port 25.
bench: $(STAMP)
	@[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-sink ] || [ "$$(id -u)" != "0" ] || \
	  (echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null) || \
	  echo "bench: postfix not installable; postfix and smtp-sink columns skipped"
	$(PY) -m bench.run

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick

# The long crash test: kill -9 the node while clients send, then count every message.
soak: $(STAMP)
	$(PY) -m tests.durability.soak

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
