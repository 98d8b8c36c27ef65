# Sourced by scripts/demo and scripts/test: make .venv and install groupsync into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "groupsync needs Python 3.11 or newer (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
# groupsync_venv DIR [PIP REQUIREMENT...]: DIR with groupsync (editable, its extras) and then
# the requirements given, which override its own pins (the Datasette 1.0 alpha in .venv-ds1).
groupsync_venv() {
  local dir="$1"; shift
  [ -x "$dir/bin/python" ] || "$py" -m venv "$dir"
  local stamp="$dir/.groupsync-installed"
  local extras="${GROUPSYNC_EXTRAS:-dev}"
  local want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)-$extras $*"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q -e ".[$extras]"
    if [ "$#" -gt 0 ]; then
      "$dir/bin/python" -m pip install -q --pre "$@"
    fi
    echo "$want" > "$stamp"
  fi
}
groupsync_venv .venv
