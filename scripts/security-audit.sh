#!/usr/bin/env bash
# Security checks run by CI (`make audit`):
#  1. bandit: static checks of src/ — fails on any finding of medium or high severity
#     (each accepted exception carries `# nosec BXXX` with the reason beside it);
#  2. pip-audit: the installed Python dependencies against PyPI's advisory data — fails on
#     any known vulnerability not listed in .ci/audit-ignore.txt (with its reason);
#  3. npm audit: the dashboard's production dependencies — fails on high or critical.
# An advisory service that cannot be reached (an offline build machine) is reported loudly,
# and fails the run when ASTRID_AUDIT_REQUIRE_NETWORK=1.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
status=0
unreachable=()

echo "== bandit (static security checks of src/) =="
if ! "$VENV/bin/bandit" -r src -q -ll 2> >(grep -v "nosec encountered" >&2); then
  echo "bandit: findings of medium or high severity (above)"; status=1
fi

echo "== pip-audit (Python dependencies) =="
ignores=()
if [ -f .ci/audit-ignore.txt ]; then
  while read -r id _; do
    [[ -z "$id" || "$id" == \#* ]] && continue
    ignores+=(--ignore-vuln "$id")
  done < .ci/audit-ignore.txt
fi
out=$("$VENV/bin/pip-audit" --progress-spinner off --skip-editable "${ignores[@]}" 2>&1)
rc=$?
skipped=$(printf '%s\n' "$out" | grep -c "could not be audited" || true)
if [ "$rc" -ne 0 ] && printf '%s\n' "$out" | grep -qE "^Name +Version +ID"; then
  printf '%s\n' "$out" | grep -v "could not be audited"
  echo "pip-audit: known vulnerabilities (above)"; status=1
else
  printf '%s\n' "$out" | grep -v "could not be audited" | tail -n 3
  if [ "$skipped" -gt 0 ]; then
    unreachable+=("pip-audit: PyPI's per-release advisory data was not reachable for $skipped packages")
  fi
fi

echo "== npm audit (dashboard production dependencies) =="
if [ -d web/node_modules ]; then
  out=$(cd web && npm audit --omit=dev --audit-level=high 2>&1)
  rc=$?
  if printf '%s\n' "$out" | grep -qE "audit endpoint returned an error|ENOTFOUND|EAI_AGAIN|ECONNREFUSED"; then
    unreachable+=("npm audit: the registry's advisory endpoint was not reachable")
  elif [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out"; echo "npm audit: high or critical advisories (above)"; status=1
  else
    printf '%s\n' "$out" | tail -n 3
  fi
else
  echo "web/node_modules is missing: run 'make web' first"; status=1
fi

for line in "${unreachable[@]}"; do
  echo "WARNING: $line — dependencies were NOT audited by it on this machine."
  [ "${ASTRID_AUDIT_REQUIRE_NETWORK:-0}" = 1 ] && status=1
done
exit $status
