"""Skyscale's requirements build: the handler of a build sandbox (see requirements.rs).

It runs pip with the sandbox's own interpreter and zips the result (`python/...`) into the
one writable directory, `/var/build`. pip's output goes to the invocation's output (the
control plane gets it with the answer) and, line by line as pip prints it, to
`/var/build/progress.log`, which the control plane reads while the build runs to stream
it to the caller. The answer says whether pip succeeded, with the end of its output.
"""

import os
import subprocess
import sys
import zipfile

TARGET = "/tmp/build"
OUTPUT = "/var/build/layer.zip"
PROGRESS = "/var/build/progress.log"
TAIL_LINES = 40


def handler(event, context):
    cmd = [
        sys.executable, "-m", "pip", "install",
        "--no-cache-dir", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off",
        "--target", os.path.join(TARGET, "python"),
        "-r", "/var/task/requirements.txt",
    ]
    with open(PROGRESS, "a", buffering=1) as progress:
        def say(line):
            print(line, end="", flush=True)
            progress.write(line)

        say("$ python3 " + " ".join(cmd[1:]) + "\n")
        # Unbuffered: a piped pip would otherwise print in blocks, not as it goes.
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env=env,
        )
        tail = []
        for line in proc.stdout:
            say(line)
            tail.append(line)
            del tail[:-TAIL_LINES]
        code = proc.wait()
        if code != 0:
            return {"ok": False, "exit_code": code, "output": "".join(tail)}
        say("zipping the installed packages into a layer\n")
        files = 0
        with zipfile.ZipFile(OUTPUT + ".part", "w", zipfile.ZIP_DEFLATED) as z:
            for parent, dirs, names in os.walk(TARGET):
                dirs.sort()
                for name in sorted(names):
                    full = os.path.join(parent, name)
                    z.write(full, os.path.relpath(full, TARGET))
                    files += 1
        os.rename(OUTPUT + ".part", OUTPUT)
        say(f"zipped {files} files\n")
    return {"ok": True, "exit_code": 0, "output": "".join(tail)}
