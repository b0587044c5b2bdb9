#!/usr/bin/env bash
# Copy the browser libraries named in package.json into static/vendor/ (minified dist files and
# their licences). Pages load them from there: nothing is fetched from a CDN at run time.
# Usage: scripts/vendor-assets.sh   (needs npm and the npm registry; run it after changing a version)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENDOR="$ROOT/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

version() { node -e "console.log(require('$ROOT/package.json').dependencies['$1'])"; }

unpack() {  # unpack <package> -> prints the folder holding the package's files
  local name="$1" ver
  ver="$(version "$name")"
  (cd "$WORK" && npm pack --silent "$name@$ver" >/dev/null)
  mkdir -p "$WORK/$name"
  tar xzf "$WORK"/"${name//\//-}"-"$ver".tgz -C "$WORK/$name"
  echo "$WORK/$name/package"
}

src="$(unpack chart.js)"
mkdir -p "$VENDOR/chartjs"
cp "$src/dist/chart.umd.min.js" "$VENDOR/chartjs/chart.umd.min.js"
cp "$src/LICENSE.md" "$VENDOR/chartjs/LICENSE.md"
echo "chart.js $(version chart.js)" > "$VENDOR/chartjs/VERSION"

src="$(unpack img-comparison-slider)"
mkdir -p "$VENDOR/img-comparison-slider"
cp "$src/dist/index.js" "$VENDOR/img-comparison-slider/index.js"
cp "$src/dist/styles.css" "$VENDOR/img-comparison-slider/styles.css"
# The npm package ships no licence file; the repository's MIT LICENSE is kept in static/vendor.
if [ -f "$src/LICENSE" ]; then cp "$src/LICENSE" "$VENDOR/img-comparison-slider/LICENSE"; fi
test -f "$VENDOR/img-comparison-slider/LICENSE" || { echo "missing img-comparison-slider LICENSE" >&2; exit 1; }
echo "img-comparison-slider $(version img-comparison-slider)" > "$VENDOR/img-comparison-slider/VERSION"

# Source maps reference files we do not ship: drop the trailing sourceMappingURL comments.
sed -i '/^\/\/# sourceMappingURL=/d' "$VENDOR/chartjs/chart.umd.min.js" "$VENDOR/img-comparison-slider/index.js"
echo "vendored into $VENDOR:"; find "$VENDOR" -type f | sort
