#!/usr/bin/env python3
"""Validate JSON files against a JSON Schema (draft 2020-12).

A `.ndjson` file is checked line by line (each line one document).
Used by the tests to check that what pgflare writes (e.g. an archive's
manifest.json) matches the published schema (schemas/*.schema.json):

    validate_json.py SCHEMA FILE...

The schema itself is checked first. Every error of every file is printed as
`FILE: $.json.path: message`, shortened, with passwords in the offending value
masked (a schema may exist precisely to catch a leaked one); a final line
says how many files were checked and how many errors were found.
Exit status: 0 when every file is valid, 1 when any file is invalid, 2 on
usage errors or unreadable / non-JSON input.
"""

import json
import re
import sys

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def json_path(path):
    """Renders a jsonschema error path (deque of keys/indexes) as $.a[0].b."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + json.dumps(part) + "]"
    return out


def tidy(error, width=300):
    """The error's message, its offending value with URL passwords masked, shortened."""
    value = repr(error.instance)
    masked = re.sub(r"(://[^/@\s:'\"]*:)[^@/\s'\"]*@", r"\1***@", value)
    masked = re.sub(r"(password=)[^&\s'\"]*", r"\1***", masked, flags=re.I)
    message = error.message.replace(value, masked + (" (password masked)" if masked != value else ""))
    return message if len(message) <= width else message[: width - 1] + "…"


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def documents(path):
    """(label, document) pairs: the file, or each line of a .ndjson file."""
    if not path.endswith(".ndjson"):
        return [(path, load(path))]
    with open(path, encoding="utf-8") as f:
        return [(f"{path}:{n}", json.loads(line)) for n, line in enumerate(f, 1) if line.strip()]


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    schema_path, files = argv[1], argv[2:]
    try:
        schema = load(schema_path)
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError) as e:
        print(f"{schema_path}: cannot read the schema: {e}", file=sys.stderr)
        return 2
    except SchemaError as e:
        print(f"{schema_path}: not a valid draft 2020-12 schema: "
              f"{json_path(e.absolute_path)}: {e.message}", file=sys.stderr)
        return 2
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    errors = 0
    unreadable = False
    for path in files:
        try:
            docs = documents(path)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read it as JSON: {e}", file=sys.stderr)
            unreadable = True
            continue
        found = 0
        for label, doc in docs:
            errs = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
            for e in errs:
                print(f"{label}: {json_path(e.absolute_path)}: {tidy(e)}")
            found += len(errs)
        if not found:
            print(f"{path}: valid ({len(docs)} documents)")
        errors += found
    print(f"validate_json: {len(files)} files, {errors} errors")
    if unreadable:
        return 2
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
