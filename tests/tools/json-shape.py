#!/usr/bin/env python3
"""Checks JSON on stdin against the example that docs/cli-json.md gives
under the heading naming COMMAND (in backticks): the same keys at every
level, values of the same JSON type (null in the example stands for any;
integers and reals are both numbers); arrays: each element against the
example's first. Exit 0, or 1 with one line per difference.

usage: json-shape.py DOC 'roam image list --json' < output.json
"""
import json
import re
import sys


def example(doc, command):
    text = open(doc, encoding="utf-8").read()
    for m in re.finditer(r"^## (.*)$", text, re.M):
        if "`%s`" % command not in m.group(1):
            continue
        block = re.search(r"```json\n(.*?)```", text[m.end():], re.S)
        if block:
            return json.loads(block.group(1))
    sys.exit("json-shape: no example for '%s' in %s" % (command, doc))


def kind(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}[type(v)]


def compare(want, got, path, out):
    if want is None:
        return
    if kind(want) != kind(got):
        if got is None:  # a documented null-able value
            return
        out.append("%s: %s, the doc says %s" % (path or ".", kind(got), kind(want)))
        return
    if isinstance(want, dict):
        for k in sorted(set(want) - set(got)):
            out.append("%s: no key '%s'" % (path or ".", k))
        for k in sorted(set(got) - set(want)):
            out.append("%s: key '%s' is not documented" % (path or ".", k))
        for k in sorted(set(want) & set(got)):
            compare(want[k], got[k], "%s.%s" % (path, k), out)
    elif isinstance(want, list) and want:
        for i, g in enumerate(got):
            compare(want[0], g, "%s[%d]" % (path, i), out)


def main():
    doc, command = sys.argv[1], sys.argv[2]
    want = example(doc, command)
    try:
        got = json.load(sys.stdin)
    except ValueError as e:
        sys.exit("json-shape: '%s' printed no valid JSON: %s" % (command, e))
    out = []
    compare(want, got, "", out)
    for line in out:
        print("json-shape: %s: %s" % (command, line))
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
