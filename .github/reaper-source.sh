#!/usr/bin/env bash
# Which reaper the workflow tests (run from the pipeline's checkout; writes to $GITHUB_OUTPUT):
#   repository, ref  what the next actions/checkout step checks out (repository empty: no checkout)
#   dir              the Cargo workspace relative to $GITHUB_WORKSPACE (for hashFiles and caches)
#   source           the same, absolute (passed as --source)
# Rules, first match wins:
#   1. a repository input (workflow_dispatch) is given  -> that repository at the ref input
#   2. this checkout is reaper itself (Cargo.toml here) -> this checkout, nothing more to check out
#   3. push / pull_request                              -> REAPER_DEFAULT_REPOSITORY at REAPER_DEFAULT_REF
#   4. a dispatch with the inputs emptied, no Cargo.toml -> error: there is nothing to test
# tests/unit/test_workflow.py runs this script for each rule.
set -euo pipefail

repo="${INPUT_REPOSITORY:-}"
ref="${INPUT_REF:-}"
dir="${REAPER_CHECKOUT:?REAPER_CHECKOUT (the folder to check reaper out into) is not set}"

if [ -z "$repo" ]; then
  if [ -f Cargo.toml ]; then
    repo="" ref="" dir="."
  elif [ "${EVENT:-}" = workflow_dispatch ]; then
    echo "::error::reaper-repository is empty and this checkout has no Cargo.toml: nothing to test (give a repository, or run this workflow in reaper's own repository)"
    exit 1
  else
    repo="${REAPER_DEFAULT_REPOSITORY:?}" ref="${REAPER_DEFAULT_REF:?}"
  fi
fi
if [ -n "$repo" ] && ! [[ "$repo" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]]; then
  echo "::error::reaper-repository '$repo' is not owner/name"
  exit 1
fi
if ! [[ "$ref" =~ ^[A-Za-z0-9_./-]*$ ]]; then
  echo "::error::reaper-ref '$ref' is not a commit SHA, tag or branch name"
  exit 1
fi

source="${GITHUB_WORKSPACE:?}"
[ "$dir" = "." ] || source="$source/$dir"
{
  echo "repository=$repo"
  echo "ref=$ref"
  echo "dir=$dir"
  echo "source=$source"
} >> "${GITHUB_OUTPUT:?}"
echo "reaper under test: ${repo:-this repository} ${ref:+at $ref} in $source"
