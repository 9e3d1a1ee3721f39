#!/usr/bin/env bash
# Copies Chart.js's UMD build from Debian's libjs-chart.js into crates/monitor/web/vendor/, where
# acs-monitor embeds it (include_bytes!) for the dashboard, and writes vendor/README.md with the
# version and the licence (MIT). The copy is committed, so a fresh machine needs nothing; run
# this again only to move to another Chart.js version (apt-get install libjs-chart.js first).
set -euo pipefail

say() { printf 'vendor-chartjs: %s\n' "$*"; }

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/crates/monitor/web/vendor"
src=""
for dir in /usr/share/javascript/chart.js /usr/share/nodejs/chart.js/dist; do
  if [ -f "$dir/chart.min.js" ]; then src="$dir/chart.min.js"; break; fi
  if [ -f "$dir/chart.umd.js" ]; then src="$dir/chart.umd.js"; break; fi
done
if [ -z "$src" ]; then
  say "Chart.js not found; install it: apt-get install -y libjs-chart.js"
  exit 1
fi
version="$(head -c 200 "$src" | sed -n 's/.*Chart\.js v\([0-9][0-9.]*\).*/\1/p' | head -n1)"
[ -n "$version" ] || { say "cannot read the version from $src"; exit 1; }
copyright=/usr/share/doc/libjs-chart.js/copyright

mkdir -p "$out"
cp "$src" "$out/chart.umd.js"
say "copied $src (Chart.js $version) to $out/chart.umd.js"

{
  printf '# Vendored: Chart.js %s\n\n' "$version"
  printf '`chart.umd.js` is the UMD build of [Chart.js](https://www.chartjs.org) %s, copied by\n' "$version"
  printf '`scripts/vendor-chartjs.sh` from Debian'"'"'s `libjs-chart.js` (`%s`, package version %s).\n' \
    "$src" "$(dpkg-query -W -f='${Version}' libjs-chart.js 2>/dev/null || echo unknown)"
  printf 'acs-monitor embeds it and serves it at `/vendor/chart.umd.js`; the dashboard loads it as a\n'
  printf 'classic script (`window.Chart`). Do not edit it; rerun the script instead.\n\n'
  printf '## Licence: MIT\n\n```\n'
  printf 'The MIT License (MIT)\n\nCopyright (c) 2014-2022 Chart.js Contributors\n\n'
  if [ -f "$copyright" ]; then
    # The Expat text from Debian's copyright file, without its one-space indent and "." lines.
    # The stand-alone "License: Expat" paragraph is the one with the text (the last one).
    awk '/^License: Expat$/ {on=1; text=""; next}
         on && /^ / {sub(/^ /, ""); if ($0 == ".") $0 = ""; text = text $0 "\n"; next}
         {on=0}
         END {printf "%s", text}' "$copyright"
  else
    say "no $copyright; the licence text below is the standard MIT text"
    cat <<'MIT'
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
MIT
  fi
  printf '```\n'
} > "$out/README.md"
say "wrote $out/README.md"
