#!/usr/bin/env python3
"""Validates OCSF events (JSON lines, from files or stdin) against the OCSF
JSON schema of their class, generated offline by the `ocsf-json-schema`
package from PyPI, with `jsonschema`. Prints one line per problem; exits 1
if any event is invalid, 0 when all are valid.

usage: ocsf_validate.py [--version 1.5.0] [FILE...]
"""
import argparse
import json
import sys

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="1.5.0")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(args.version))
    validators = {}
    lines = []
    for f in args.files or ["-"]:
        stream = sys.stdin if f == "-" else open(f, encoding="utf-8")
        lines += [(f, n, l) for n, l in enumerate(stream, 1) if l.strip()]
    bad = 0
    classes = {}
    for f, n, line in lines:
        event = json.loads(line)
        uid = event.get("class_uid")
        name = schema.lookup_class_name_from_uid(uid)
        # The profiles the event declares add their attributes to the class.
        profiles = sorted(event.get("metadata", {}).get("profiles", []))
        key = (name, tuple(profiles))
        if key not in validators:
            validators[key] = Draft202012Validator(schema.get_class_schema(name, profiles))
        classes[name] = classes.get(name, 0) + 1
        for err in validators[key].iter_errors(event):
            bad += 1
            path = "/".join(str(p) for p in err.absolute_path)
            print(f"{f}:{n}: {name}: {path}: {err.message}")
    print(json.dumps({"events": len(lines), "invalid": bad, "classes": classes}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
