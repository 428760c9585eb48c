#!/usr/bin/python3
"""A model-driven agent for agentwatch's detection corpus.

It behaves as the agents agentwatch watches do: it asks its model (an
HTTP chat-completions endpoint) what to do next, runs the tool call the
model answers with, sends the result back, and stops when the model has
no more calls. Which session it runs is entirely the model's doing: the
corpus runner serves each session's steps from its loopback model server,
so learning sessions, held-out sessions and attacks all run this one
program.

Tools, as real coding and ops agents have them:
  bash CMD               run a shell command in the workspace (bash -c)
  read_file PATH         read a file, in this process
  write_file PATH TEXT   write a file (creating its directory), in this process
  edit_file PATH OLD NEW replace text in a file, in this process
  list_dir PATH          list a directory, in this process
  http_get URL           an HTTP GET, in this process (the ops agent's API)
  http_post URL TEXT     an HTTP POST, in this process

The API key comes from the environment (CORPUS_KEY), never from a file.
"""
import json
import os
import subprocess
import sys
import urllib.request

MODEL = os.environ["CORPUS_MODEL"]
KEY = os.environ.get("CORPUS_KEY", "")
LIMIT = 4000


def ask(messages):
    body = json.dumps({"model": "corpus-1", "messages": messages}).encode()
    req = urllib.request.Request(
        MODEL,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def run_tool(name, args):
    # Paths may start with ~, as the agents the corpus stands for accept.
    path = os.path.expanduser(args[0]) if args else ""
    if name == "bash":
        p = subprocess.run(
            ["bash", "-c", args[0]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return "exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr)
    if name == "read_file":
        with open(path) as f:
            return f.read()
    if name == "write_file":
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(path, "w") as f:
            f.write(args[1])
        return "wrote %d bytes" % len(args[1])
    if name == "edit_file":
        with open(path) as f:
            text = f.read()
        if args[1] not in text:
            return "error: text not found"
        with open(path, "w") as f:
            f.write(text.replace(args[1], args[2], 1))
        return "edited"
    if name == "list_dir":
        return "\n".join(sorted(os.listdir(path)))
    if name == "http_get":
        with urllib.request.urlopen(args[0], timeout=30) as r:
            return r.read().decode(errors="replace")
    if name == "http_post":
        req = urllib.request.Request(args[0], data=args[1].encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode(errors="replace")
    return "error: unknown tool " + name


def main():
    task = sys.argv[1] if len(sys.argv) > 1 else "work"
    messages = [{"role": "user", "content": task}]
    while True:
        reply = ask(messages)["choices"][0]["message"]
        messages.append(reply)
        calls = reply.get("tool_calls") or []
        if not calls:
            print(reply.get("content") or "done")
            return
        for call in calls:
            fn = call["function"]
            args = json.loads(fn["arguments"])["args"]
            try:
                out = run_tool(fn["name"], args)
            except Exception as e:  # the model sees the error, as it would
                out = "error: %s" % e
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": out[:LIMIT]}
            )


if __name__ == "__main__":
    main()
