#!/usr/bin/env bash
# Set up on a fresh machine (the main install only, no test extras), index the shipped sample offline with
# the default model, and run a few searches.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS-}" bash scripts/setup.sh
imagerank=.venv/bin/imagerank
"$imagerank" models
"$imagerank" index sample/caltech101 --index .demo/sample.index
"$imagerank" info --index .demo/sample.index
for query in sample/queries/*.jpg; do
  "$imagerank" search "$query" --index .demo/sample.index -k 5
done
"$imagerank" search --id 1 --index .demo/sample.index -k 5
