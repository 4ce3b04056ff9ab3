#!/bin/bash
# The record of the 2026-12-05l run (seventh session, final): run-corpus.sh from a build of f424e30, with main at a65c440 (this session's start).
D=${D:-2026-12-05l} MAIN=${MAIN:-/work/wt/s7/dist/src/cli/main.js} exec bash "$(dirname "$0")/run-corpus.sh"
