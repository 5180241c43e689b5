# Set-up steps shared by tests/interop/run.sh and tests/web/run.sh, sourced
# by both. They expect from the caller: log MESSAGE, fail MESSAGE, and the
# variables install_limit, apt_limit (seconds), chromium_bin and
# playwright_dir. SUITE below names the suite in failure lines
# ("chromium" gives "chromium/setup: ...").

# npm_package SUITE DIR PACKAGE MAJOR: PACKAGE@MAJOR from npm in DIR, unless
# already there (or WS_INTEROP_UPGRADE=1). Extra environment for npm may be
# given before the call.
npm_package() {
  local suite=$1 dir=$2 package=$3 major=$4
  if [ "${WS_INTEROP_UPGRADE:-0}" != 1 ] &&
    node -e 'process.exit(require(process.argv[1]).version.startsWith(process.argv[2] + ".") ? 0 : 1)' \
      "$dir/node_modules/$package/package.json" "$major" 2>/dev/null; then
    return 0
  fi
  command -v npm >/dev/null || { fail "$suite/setup: npm not found"; return 1; }
  log "installing $package@$major from npm into $dir"
  mkdir -p "$dir"
  timeout "$install_limit" npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$package@$major" >&2 ||
    { fail "$suite/setup: npm install $package@$major failed"; return 1; }
}

# chromium_with_playwright SUITE: Debian's chromium (apt-get, as root, when
# $chromium_bin is missing) and playwright-core@1 to drive it.
chromium_with_playwright() {
  local suite=$1
  command -v node >/dev/null || { fail "$suite/setup: node not found"; return 1; }
  if [ ! -x "$chromium_bin" ]; then
    command -v apt-get >/dev/null ||
      { fail "$suite/setup: $chromium_bin is missing and there is no apt-get to install it"; return 1; }
    [ "$(id -u)" -eq 0 ] ||
      { fail "$suite/setup: $chromium_bin is missing; installing it with apt-get needs root"; return 1; }
    log "installing Debian's chromium package (apt-get, up to ${apt_limit} s per step)"
    timeout "$apt_limit" apt-get update >&2 ||
      { fail "$suite/setup: apt-get update failed"; return 1; }
    DEBIAN_FRONTEND=noninteractive timeout "$apt_limit" \
      apt-get install -y --no-install-recommends chromium >&2 ||
      { fail "$suite/setup: apt-get install chromium failed"; return 1; }
    [ -x "$chromium_bin" ] ||
      { fail "$suite/setup: apt-get installed chromium but $chromium_bin is not there"; return 1; }
  fi
  # playwright-core only drives that browser: no download from its CDN.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm_package "$suite" "$playwright_dir" playwright-core 1
}
