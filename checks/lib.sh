# checks/lib.sh — what the system checks share; sourced, not run. Set CHECK_TAG first (the log
# prefix). Leaves the shell in the repository root, with:
#   ROOT      the repository root
#   DEMO      scripts/compose-demo.sh (starts, stops and steers the compose cluster)
#   PROJECT   the compose project name (COMPOSE_PROJECT_NAME, default acs), exported
#   say, die  a log line on stderr; die exits 1
#   acscheck  checks/acscheck.py: every parse, timing and raw-protocol step (see its --help)
#   http_code URL [SECONDS]   the HTTP status of a GET (000 when nothing answered)
#   help_from_header FILE     prints FILE's header comment (its usage) for --help

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEMO="$ROOT/scripts/compose-demo.sh"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-acs}
PROJECT=$COMPOSE_PROJECT_NAME

say() { printf '%s: %s\n' "${CHECK_TAG:-check}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${CHECK_TAG:-check}" "$*" >&2; exit 1; }

acscheck() { python3 "$ROOT/checks/acscheck.py" "$@"; }

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-2}" "$1" || true; }

# The header comment after the shebang, without its `# `, up to the first line that is not one.
help_from_header() { sed -n '2,/^[^#]/p' "$1" | sed '$d; s/^# \{0,1\}//'; }

command -v python3 >/dev/null 2>&1 || die "python3 not found (the checks' helpers are checks/acscheck.py)"
