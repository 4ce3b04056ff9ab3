#!/bin/bash
# The record of the 2026-12-05b and -c runs (second session): run-corpus.sh with main at 769e58a.
D=${D:-2026-12-05b} MAIN=${MAIN:-/work/wt/s6/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
