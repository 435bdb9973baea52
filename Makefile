# The README's two commands: `make run` and `make test`.  Everything they need is installed
# here, apt packages included (CI runs as root on a fresh machine).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MAILPLANE := $(VENV)/bin/mailplane
STAMP := $(VENV)/.installed

# どこでもメール (SPEC §9b), served by `make run` too: Dovecot's IMAP with its Lua passdb,
# Roundcube with SQLite for its own state, and PHP's CLI and CGI (naming php8.2-cgi keeps apt
# from choosing Apache's PHP module for Roundcube: no web server is installed or started).
APT_RUN_PACKAGES := dovecot-imapd dovecot-auth-lua roundcube-core roundcube-sqlite3 php8.2-cli php8.2-cgi
# Real daemons the test suite starts itself (clamd, spamd, Dovecot, rspamd), the browser for the
# portal tests, swaks with its TLS module (an independent SMTP client for the tests), and what
# `make run` serves.  Installed with apt when missing and we are root; tests that need a missing
# one skip with the reason printed.
APT_PACKAGES := clamav-daemon clamav spamassassin spamd spamc dovecot-pop3d chromium fonts-ipafont-gothic swaks libnet-ssleay-perl rspamd $(APT_RUN_PACKAGES)
# Roundcube's package would otherwise offer to create a database: its state is in var/.
APT_PRESEED := roundcube-core roundcube/dbconfig-install boolean false

.PHONY: run test lint typecheck venv apt-deps apt-run-deps apt-install migrate seed clean bench bench-quick soak locale messages screenshots

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) locale

# API messages in Japanese: mailplane/locale/*/LC_MESSAGES/*.po compiled to .mo (not
# committed; the setuptools build hook does the same for wheels and editable installs).
locale: $(STAMP)
	$(PY) -m mailplane.i18n.catalogue compile

# After changing a customer-facing message in the code: merge the msgids into the .po
# files, translate the new entries, then `make locale`.
messages: $(STAMP)
	$(PY) -m mailplane.i18n.catalogue update
	$(PY) -m mailplane.i18n.catalogue check || echo "translate the entries listed above"

apt-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)" \
	  WITHOUT="tests that need them will skip"

# `make run` serves どこでもメール when these are installed (and installs them as root).
apt-run-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_RUN_PACKAGES)" \
	  WITHOUT="make run serves the rest"

apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "apt: installing$$missing"; \
	    echo "$(APT_PRESEED)" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "apt: missing$$missing and not root; $(WITHOUT)"; \
	  fi; \
	fi

run: $(STAMP) locale apt-run-deps
	mkdir -p var
	$(MAILPLANE) migrate
	$(MAILPLANE) seed-demo
	$(MAILPLANE) serve

lint: $(STAMP)
	$(VENV)/bin/ruff check mailplane tests $(wildcard bench)
	$(VENV)/bin/mypy --strict mailplane
	$(VENV)/bin/lint-imports

test: $(STAMP) locale apt-deps lint
	$(VENV)/bin/pytest -q -ra

# The portal screenshots in docs/screenshots/ (1280 and 390 px): documentation, made on
# purpose; ordinary test runs write theirs to a temporary directory.
screenshots: $(STAMP) locale apt-deps
	MAILPLANE_TEST_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest -q -p no:randomly tests/portal/test_screenshots.py

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
