#!/bin/bash
# The record of the 2026-12-05h run (fifth session): run-corpus.sh from a build of 976d710, with main at e93e547.
D=${D:-2026-12-05h} MAIN=${MAIN:-/work/wt/m/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
