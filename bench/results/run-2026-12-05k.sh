#!/bin/bash
# The record of the 2026-12-05k run (sixth session, final): run-corpus.sh from a build of 9d70254, with main at a3aaec8 (this session's start).
D=${D:-2026-12-05k} MAIN=${MAIN:-/work/wt/c0/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
