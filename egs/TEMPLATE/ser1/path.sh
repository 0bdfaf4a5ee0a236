# Activates sertk's virtual environment (created by `make -C tools`) and puts bin/ on PATH.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ ! -x "$MAIN_ROOT/tools/venv/bin/python" ]; then
  echo "path.sh: $MAIN_ROOT/tools/venv is missing; run: make -C $MAIN_ROOT/tools" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$MAIN_ROOT/tools/venv/bin/activate"
export PATH=$MAIN_ROOT/bin:$PATH
export LC_ALL=C
export PYTHONUNBUFFERED=1
