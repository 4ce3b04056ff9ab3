#!/bin/bash
# The record of the 2026-12-05i run (fifth session): run-corpus.sh from a build of c648027, with main at e93e547.
D=${D:-2026-12-05i} MAIN=${MAIN:-/work/wt/m/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
