# Sourced by scripts/test and scripts/demo: make .venv with strom and every extra installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.strom-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[all,dev]"
  echo "$want" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
# kcat: an independent Kafka client some Kafka tests write and read with (they skip without it).
if ! command -v kcat >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq kcat >/dev/null) \
      || echo "warning: apt-get install kcat failed; kcat-based Kafka tests will be skipped" >&2
  else
    echo "note: kcat not installed and apt-get unavailable; kcat-based Kafka tests will skip" >&2
  fi
fi
