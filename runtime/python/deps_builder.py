"""Skyscale's requirements build: the handler of a build sandbox (see requirements.rs).

It runs pip with the sandbox's own interpreter, printing pip's output as it comes (the
control plane captures it), and zips the result (`python/...`) into the one writable
directory, `/var/build`. Its answer says whether pip succeeded, with the end of its output.
"""

import os
import subprocess
import sys
import zipfile

TARGET = "/tmp/build"
OUTPUT = "/var/build/layer.zip"
TAIL_LINES = 40


def handler(event, context):
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--no-cache-dir", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off",
        "--target", os.path.join(TARGET, "python"),
        "-r", "/var/task/requirements.txt",
    ]
    print("$ python3 " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        tail.append(line)
        del tail[:-TAIL_LINES]
    code = proc.wait()
    if code != 0:
        return {"ok": False, "exit_code": code, "output": "".join(tail)}
    files = 0
    with zipfile.ZipFile(OUTPUT + ".part", "w", zipfile.ZIP_DEFLATED) as z:
        for parent, dirs, names in os.walk(TARGET):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(parent, name)
                z.write(full, os.path.relpath(full, TARGET))
                files += 1
    os.rename(OUTPUT + ".part", OUTPUT)
    print(f"zipped {files} files", flush=True)
    return {"ok": True, "exit_code": 0, "output": "".join(tail)}
