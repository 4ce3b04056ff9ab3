#!/bin/bash
# The record of the 2026-12-05g run (fourth session, final): run-corpus.sh from a build of 303fcc7, with main at 0e550e8.
D=${D:-2026-12-05g} MAIN=${MAIN:-/work/wt/h/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
