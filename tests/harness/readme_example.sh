#!/bin/sh
# tests/harness/readme_example.sh - prints the README's C API example (the
# first C block after "## The C API in a page"), a whole program, for the
# tests that compile it (test_readme_example.sh, test_install.sh).
awk '/^## The C API in a page/ { on = 1 } on && /^```c$/ { code = 1; next }
     code && /^```$/ { exit } code { print }' "$(dirname "$0")/../../README.md"
