#!/usr/bin/env bash
# Set up everything the tests need (venv, extras, chromium) and run lint + the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
LIKENESS_EXTRAS=app,video,insightface,generate,test LIKENESS_WITH_BROWSER=1 LIKENESS_WITH_POSTGRES=1 scripts/setup.sh
.venv/bin/ruff check src tests bench app
.venv/bin/python -m pytest "$@"
