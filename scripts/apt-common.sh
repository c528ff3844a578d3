# Shared by scripts/setup-browser, setup-terminal, setup-irc and setup-redis (sourced, never
# run): installing the Debian package (or packages) for the tests that need it.
#
# The sourcing script sets, before sourcing:
#   script    its name, which starts every line it prints (setup-browser)
#   package   the Debian package (chromium), or several separated by spaces, installed together
#             (weechat-headless weechat-plugins)
#   skipped   the tests that skip when it cannot be installed (the browser tests)
#
# - aptInstall: apt-get install -y --no-install-recommends $package, as root or through
#   `sudo -n` (never a prompt); `apt-get update` first only when the install fails for want of
#   package lists. Sets $updated to " (after apt-get update)" if it had to.
# - cannot REASON: says why it cannot, and exits 0, so that the tests skip saying why; under
#   CI=true it exits 1 instead.
# apt's own output goes to stderr only when apt fails.

say() { echo "$script: $*"; }

cannot() {
    if [ "${CI:-}" = "true" ]; then
        say "cannot install $package: $1 (CI=true, so this is an error)" >&2
        exit 1
    fi
    say "cannot install $package: $1; $skipped will be skipped"
    exit 0
}

aptInstall() {
    command -v apt-get >/dev/null 2>&1 || cannot "apt-get not found (not a Debian-like system)"
    local asRoot
    if [ "$(id -u)" -eq 0 ]; then
        asRoot=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true </dev/null >/dev/null 2>&1; then
        asRoot=(sudo -n)
    else
        cannot "not root, and sudo is missing or needs a password"
    fi
    local log packages
    read -r -a packages <<<"$package"
    log=$(mktemp)
    # shellcheck disable=SC2064
    trap "rm -f '$log'" EXIT
    updated=""
    if "${asRoot[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null >"$log" 2>&1; then
        return 0
    fi
    # Fresh images ship without package lists: "Unable to locate package" (or "has no
    # installation candidate"). Anything else is a real failure, reported as is.
    if ! grep -q -E "Unable to locate package|has no installation candidate|Failed to fetch" "$log"; then
        cat "$log" >&2
        cannot "apt-get install $package failed"
    fi
    if ! "${asRoot[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        cannot "apt-get update failed"
    fi
    updated=" (after apt-get update)"
    if ! "${asRoot[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        cannot "apt-get install $package failed"
    fi
}
