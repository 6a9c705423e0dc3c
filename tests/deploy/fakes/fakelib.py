"""Shared by the fake cloud CLIs of the deploy tests: the call log, the state file, output."""
import json
import os
import shutil
import sys


class Fake:
    def __init__(self, tool):
        self.tool = tool
        self.dir = os.environ["FAKE_STATE"]
        self.state_file = os.path.join(self.dir, "state.json")
        try:
            with open(self.state_file) as f:
                self.state = json.load(f)
        except FileNotFoundError:
            self.state = {}
        argv = sys.argv[1:]
        with open(os.environ["FAKE_LOG"], "a") as f:
            f.write(tool + " " + " ".join(argv) + "\n")
        self.append("calls.jsonl", json.dumps({"tool": tool, "argv": argv}) + "\n")

    def append(self, name, text):
        with open(os.path.join(self.dir, name), "a") as f:
            f.write(text)

    def keep_file(self, path, name):
        """Keeps a copy of a file the script hands over (it deletes its own on exit)."""
        if os.path.isfile(path):
            shutil.copy(path, os.path.join(self.dir, name))

    def save(self):
        with open(self.state_file, "w") as f:
            json.dump(self.state, f, indent=1)

    def fail(self, message, code=1):
        self.save()
        print(message, file=sys.stderr)
        sys.exit(code)

    def out(self, value, fmt):
        """gcloud's --format: json, or value(a.b) for one field."""
        if fmt.startswith("value("):
            for part in fmt[6:-1].split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
            print(value)
        else:
            print(json.dumps(value, indent=1))
