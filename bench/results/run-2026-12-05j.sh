#!/bin/bash
# The record of the 2026-12-05j run (fifth session, final): run-corpus.sh from a build of 2a057cd, with main at e93e547.
D=${D:-2026-12-05j} MAIN=${MAIN:-/work/wt/m/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
