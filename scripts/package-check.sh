#!/usr/bin/env bash
# Checks the Debian packages on this machine (root only; scripts/test.sh runs
# it as root, after the namespace tests): packages the dev binaries
# scripts/test.sh built (scripts/package.sh --profile dev --no-build; no
# release build), installs both with dpkg -i, and checks
#   - systemd-analyze verify passes on both units (the binaries installed),
#   - the pollen system user and group exist, with no login shell,
#   - /var/lib/pollen/{node,seeder} are pollen:pollen, mode 0700, and the
#     pollen user can use its state (`pollen-node id`, `pollen-seeder id`),
#   - /etc/pollen/{node,seeder}.toml are registered conffiles,
#   - the units are installed but not enabled, and nothing was started,
#   - `pollen-node --version` and `pollen-seeder --version` run,
#   - a second dpkg -i (an upgrade in place) succeeds,
#   - dpkg -r keeps the conffiles and the state, and dpkg --purge removes
#     them, the units and the binaries (Debian practice keeps the pollen
#     user; this check then removes it if it created it).
# It refuses to run (and fails) where pollen packages, /etc/pollen or
# /var/lib/pollen are already present, rather than clobber them, and leaves
# the machine as it found it. Any problem fails it (nonzero); it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "package-check: FAILED: $*" >&2
  exit 1
}
ok() { echo "package-check: ok: $*"; }

[[ $(id -u) -eq 0 ]] || fail "needs root (dpkg -i); run it as root"
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (scripts/setup.sh installs systemd)"

pkgs=(pollen-node pollen-seeder)
for pkg in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ -z $status || $status == un* ]] \
    || fail "$pkg is already on this machine (dpkg status '$status'): not touching it; remove it first"
done
for path in /etc/pollen /var/lib/pollen /usr/bin/pollen-node /usr/bin/pollen-seeder; do
  [[ ! -e $path ]] || fail "$path already exists: not touching it; move it away first"
done
user_existed=0
group_existed=0
getent passwd pollen >/dev/null && user_existed=1
getent group pollen >/dev/null && group_existed=1

work=$(mktemp -d)
cleanup() {
  local rc=$?
  for pkg in "${pkgs[@]}"; do
    if dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -qv '^un'; then
      dpkg --purge "$pkg" >/dev/null 2>&1 || { echo "package-check: cleanup: dpkg --purge $pkg failed" >&2; rc=1; }
    fi
  done
  if ((!user_existed)) && getent passwd pollen >/dev/null; then userdel pollen || rc=1; fi
  if ((!group_existed)) && getent group pollen >/dev/null; then groupdel pollen || rc=1; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

mapfile -t debs < <(bash scripts/package.sh --profile dev --no-build --out "$work")
((${#debs[@]} == 2)) || fail "scripts/package.sh gave ${#debs[@]} packages, not 2: ${debs[*]}"
ok "packaged ${debs[*]}"

dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
for pkg in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg")
  [[ $status == "ii " ]] || fail "$pkg: dpkg status '$status' after dpkg -i, not 'ii'"
done
ok "dpkg -i: both installed"

units=/usr/lib/systemd/system
for unit in pollen-node pollen-seeder; do
  [[ -f $units/$unit.service ]] || fail "$units/$unit.service not installed"
  systemd-analyze verify --man=no "$units/$unit.service" >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "systemd-analyze verify $unit.service"; }
  [[ ! -s $work/verify.log ]] || { cat "$work/verify.log" >&2; fail "systemd-analyze verify $unit.service warns"; }
  grep -q "^ExecStart=/usr/bin/$unit " "$units/$unit.service" || fail "$unit.service: ExecStart is not /usr/bin/$unit"
  for wants in /etc/systemd/system/*.wants/"$unit".service; do
    [[ ! -e $wants && ! -L $wants ]] || fail "$unit.service is enabled on install ($wants)"
  done
done
ok "systemd-analyze verify: both units; installed, not enabled"

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd pollen) || fail "no pollen user"
[[ $(getent group pollen | cut -d: -f3) == "$gid" ]] || fail "pollen's primary group is not pollen"
((uid < 1000)) || fail "pollen is not a system user (uid $uid)"
[[ $shell == */nologin ]] || fail "pollen has a login shell ($shell)"
ok "user pollen (uid $uid, group pollen $gid, home $home, shell $shell)"

for dir in node seeder; do
  got=$(stat -c '%U:%G %a' "/var/lib/pollen/$dir") || fail "/var/lib/pollen/$dir missing"
  [[ $got == "pollen:pollen 700" ]] || fail "/var/lib/pollen/$dir is '$got', not 'pollen:pollen 700'"
done
ok "/var/lib/pollen/node and /var/lib/pollen/seeder: pollen:pollen 0700"

for pkg in node seeder; do
  conffiles=$(dpkg-query -W -f='${Conffiles}' "pollen-$pkg")
  grep -q "^ /etc/pollen/$pkg.toml [0-9a-f]\{32\}$" <<<"$conffiles" \
    || fail "pollen-$pkg: /etc/pollen/$pkg.toml is not a conffile (got: $conffiles)"
done
grep -qx 'data = "/var/lib/pollen/node"' /etc/pollen/node.toml || fail "node.toml does not set data"
grep -qx 'store = "/var/lib/pollen/seeder"' /etc/pollen/seeder.toml || fail "seeder.toml does not set store"
ok "conffiles registered: /etc/pollen/node.toml, /etc/pollen/seeder.toml"

node_version=$(/usr/bin/pollen-node --version) || fail "/usr/bin/pollen-node --version"
seeder_version=$(/usr/bin/pollen-seeder --version) || fail "/usr/bin/pollen-seeder --version"
ok "$node_version; $seeder_version"

# The pollen user can use its state (this writes an identity, which
# dpkg --purge must remove).
runuser -u pollen -- /usr/bin/pollen-node id --data /var/lib/pollen/node >/dev/null 2>&1 \
  || fail "pollen-node id as the pollen user in /var/lib/pollen/node"
runuser -u pollen -- /usr/bin/pollen-seeder id --store /var/lib/pollen/seeder >/dev/null 2>&1 \
  || fail "pollen-seeder id as the pollen user in /var/lib/pollen/seeder"
ok "the pollen user creates identities in its state directories"

for proc in /proc/[0-9]*; do
  [[ $(stat -c %U "$proc" 2>/dev/null) != pollen ]] \
    || fail "a process runs as pollen after install: $(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null)"
done
ok "nothing started"

dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i again (upgrade in place)"; }
[[ $(stat -c '%U:%G %a' /var/lib/pollen/node) == "pollen:pollen 700" ]] || fail "reinstall changed /var/lib/pollen/node"
ok "dpkg -i again (upgrade in place)"

dpkg -r "${pkgs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -r"; }
for path in /etc/pollen/node.toml /etc/pollen/seeder.toml /var/lib/pollen/node /var/lib/pollen/seeder; do
  [[ -e $path ]] || fail "dpkg -r removed $path (only a purge may)"
done
for path in /usr/bin/pollen-node /usr/bin/pollen-seeder; do
  [[ ! -e $path ]] || fail "dpkg -r left $path"
done
ok "dpkg -r: binaries gone, conffiles and state kept"

dpkg --purge "${pkgs[@]}" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge"; }
for pkg in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ -z $status || $status == un* ]] || fail "$pkg: dpkg status '$status' after purge"
done
for path in /etc/pollen /var/lib/pollen /usr/bin/pollen-node /usr/bin/pollen-seeder \
  $units/pollen-node.service $units/pollen-seeder.service \
  /usr/lib/sysusers.d/pollen-node.conf /usr/lib/sysusers.d/pollen-seeder.conf \
  /usr/share/doc/pollen-node /usr/share/doc/pollen-seeder; do
  [[ ! -e $path ]] || fail "dpkg --purge left $path"
done
leftover=$(find /etc /usr /var/lib /var/log /run /tmp /home -xdev -user pollen -print 2>/dev/null || true)
[[ -z $leftover ]] || fail "files owned by pollen remain after purge: $leftover"
leftover=$(find /etc/systemd /var/lib/systemd /var/lib/dpkg/info -name '*pollen*' -print 2>/dev/null || true)
[[ -z $leftover ]] || fail "unit state or package files remain after purge: $leftover"
getent passwd pollen >/dev/null || fail "dpkg --purge removed the pollen user (Debian practice keeps it)"
ok "dpkg --purge: conffiles, state, units and binaries gone; the pollen user kept (Debian practice)"

echo "package-check: PASSED"
