#!/bin/bash
# The record of the 2026-12-05 run (first session): run-corpus.sh with main at 48711c0.
D=${D:-2026-12-05} MAIN=${MAIN:-/work/wt/main/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
