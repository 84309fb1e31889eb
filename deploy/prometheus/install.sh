#!/bin/sh
# Install Prometheus, promtool, Alertmanager and amtool from Debian's packages, if any is missing.
#
#   sh deploy/prometheus/install.sh           # no-op when all four tools are on PATH
#   sh deploy/prometheus/install.sh --force   # run apt-get even so (upgrade, or repair)
#
# The end-to-end tests (tests/e2e) run these tools as plain processes on free
# ports, so the packages' daemons must not start: Debian starts them on install
# (Prometheus on :9090, Alertmanager on :9093, which is also Kafka's customary
# controller port). A policy-rc.d that exits 101 forbids that for the duration of
# the install; Recommends (node-exporter, ...) are not installed.
#
# Needs root: run as root, or as a user with password-less sudo. Without either
# (or without apt-get) it fails under CI (CI=true) and only warns elsewhere, where
# the e2e tests then skip. A failing apt-get always stops the script, with the
# failing command, its exit code and apt's own error lines.
set -eu

TOOLS="prometheus promtool prometheus-alertmanager amtool"
PACKAGES="prometheus prometheus-alertmanager"
POLICY=/usr/sbin/policy-rc.d
LOG=$(mktemp "${TMPDIR:-/tmp}/decaywatch-install.XXXXXX")
SUDO=""
CREATED_POLICY=""

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# cannot_install MESSAGE: a failure under CI (CI set, as tests/helpers.py reads it), where the
# e2e tests must run; elsewhere a warning, since those tests then skip with the same reason.
cannot_install() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        "" | 0 | false | no)
            printf 'install.sh: warning: %s; the e2e tests will be skipped\n' "$*" >&2
            exit 0
            ;;
        *) die "$* (CI is set, so this is an error)" ;;
    esac
}

missing_tools() {
    missing=""
    for tool in $TOOLS; do
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
    done
    printf '%s' "${missing# }"
}

cleanup() {
    if [ -n "$CREATED_POLICY" ]; then
        $SUDO rm -f "$POLICY" || printf 'install.sh: warning: could not remove %s: remove it by hand\n' "$POLICY" >&2
    fi
    rm -f "$LOG"
}

# run DESCRIPTION COMMAND...: run a command with its output in $LOG; on failure show what failed and why.
run() {
    description=$1
    shift
    "$@" >"$LOG" 2>&1 || {
        status=$?
        {
            printf 'install.sh: error: %s failed (exit %s): %s\n' "$description" "$status" "$*"
            printf 'install.sh: last lines of its output:\n'
            tail -n 40 "$LOG" | sed 's/^/    /'
        } >&2
        exit "$status"
    }
}

# pids of the packages' daemons, to tell apart the ones the install itself started
daemon_pids() {
    for name in prometheus prometheus-alertmanager; do
        pgrep -f "^(/usr/bin/)?$name( |\$)" 2>/dev/null || true
    done | sort
}

trap cleanup EXIT
trap 'exit 130' INT TERM

force=""
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    *) die "unknown argument '$1' (usage: install.sh [--force])" ;;
esac

missing=$(missing_tools)
if [ -z "$missing" ] && [ -z "$force" ]; then
    say "prometheus, promtool, prometheus-alertmanager and amtool are installed"
    exit 0
fi
[ -n "$missing" ] && say "missing: $missing; installing Debian's $PACKAGES"

command -v apt-get >/dev/null 2>&1 \
    || cannot_install "apt-get not found: this script installs Debian's packages; elsewhere install prometheus, promtool, alertmanager (as prometheus-alertmanager or alertmanager) and amtool yourself"

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        cannot_install "installing $PACKAGES needs root: run 'sudo sh $0' (password-less sudo was not available)"
    fi
fi

if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# decaywatch install.sh: no daemon starts while packages install\nexit 101\n' \
        | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    CREATED_POLICY=1
else
    say "keeping the existing $POLICY"
fi

before=$(daemon_pids)
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300"
# shellcheck disable=SC2086 # word splitting of $APT and $PACKAGES is intended
{
    run "apt-get update" $APT update
    run "apt-get install $PACKAGES" $APT install --no-install-recommends $PACKAGES
}

# Belt and braces: stop any daemon the install started despite the policy (never one that ran before).
after=$(daemon_pids)
started=$(printf '%s\n' "$after" | grep -vxF -e "$before" -e "" || true)
if [ -n "$started" ]; then
    say "stopping daemons the install started: $(echo "$started" | tr '\n' ' ')"
    for service in prometheus prometheus-alertmanager; do
        $SUDO service "$service" stop >/dev/null 2>&1 || true
    done
    for pid in $started; do
        $SUDO kill "$pid" 2>/dev/null || true
    done
fi

missing=$(missing_tools)
[ -z "$missing" ] || die "installed $PACKAGES, but still not on PATH: $missing"
say "installed: $(prometheus --version 2>&1 | head -n 1); $(prometheus-alertmanager --version 2>&1 | head -n 1)"
