#!/usr/bin/env bash
# `cargo deny check advisories`: the lock file against the RustSec advisory database.
# The database is a git repository on GitHub; cargo-deny keeps it in ~/.cargo/advisory-dbs/advisory-db-<hash>.
# With network access this fetches it; without (CI here reaches only the package registries)
# it uses the copy on disk if there is one (warning loudly when it is over 30 days old), and
# otherwise prints a loud NOT CHECKED banner and exits 0 (exit 3 with STRICT_ADVISORIES=1, for
# either). deny.toml lists the advisories reviewed and
# ignored, with the database revision they were reviewed against.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-cargo-deny.sh

# Update the copy on disk, or clone it. (cargo-deny exits 0 when an update fails but a copy
# exists, so the revision printed below is what tells how fresh the check is.)
timeout 120 cargo deny fetch db >/dev/null 2>&1 || true
if ! compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-*" >/dev/null; then
  cat >&2 <<'BANNER'
########################################################################################
# ADVISORIES NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) cannot  #
# be fetched from this machine and there is no copy in ~/.cargo/advisory-dbs/.         #
# Licenses, bans and sources were checked; see deny.toml for the last advisory review.  #
########################################################################################
BANNER
  [ "${STRICT_ADVISORIES:-0}" = 1 ] && exit 3
  exit 0
fi
db=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-* | head -1)
echo "advisory database $db: revision $(git -C "$db" log -1 --format='%h of %cs' 2>/dev/null || echo unknown)"
# A copy that could not be updated may be old: say how old, loudly past 30 days.
committed=$(git -C "$db" log -1 --format=%ct 2>/dev/null || echo 0)
age_days=$(( ($(date +%s) - committed) / 86400 ))
if [ "$age_days" -gt 30 ]; then
  echo "WARNING: the advisory database is $age_days days old (it could not be updated): advisories published since are NOT checked" >&2
  [ "${STRICT_ADVISORIES:-0}" = 1 ] && exit 3
fi
cargo deny --offline check advisories
