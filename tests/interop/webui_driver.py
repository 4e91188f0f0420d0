# SPDX-License-Identifier: LGPL-3.0-or-later
"""Drive headless Chromium (Debian's) over the DevTools protocol for the Web UI
test, with python3-websocket; no npm.

    python3 webui_driver.py OUTDIR STEPS_JSON

STEPS_JSON is a list of steps run in order in one browser (one cookie jar):
    {"visit": URL}                        load URL, wait until loaded
    {"pre": JS}                           evaluate before the click (e.g. tick a box)
    {"click": CSS}                        accept confirm(), click the first match,
                                          wait for the next page to load
    {"shot": NAME}                        PNG screenshot into OUTDIR/NAME
    {"eval": JS}                          evaluate an expression (JSON value)
    {"wait_js": JS, "timeout": S}         poll until JS is truthy (default 10 s)
Every step reports {"url", "text" (document.body.innerText)} and "value" for
eval. Prints one line "WEBUI-RESULT <json>" ({"steps": [...]}); exit 1 with a
message on failure, 77 when chromium or python3-websocket is missing.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77
STEP_TIMEOUT_S = 20.0

try:
    import websocket  # python3-websocket
except ImportError as e:
    print("python3-websocket is missing (%s); apt-get install python3-websocket" % e, file=sys.stderr)
    sys.exit(SKIP)


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    def __init__(self, exe):
        self.profile = tempfile.mkdtemp(prefix="dray-webui-chrome-")
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--user-data-dir=" + self.profile, "--remote-debugging-port=0",
                "--remote-allow-origins=*", "--window-size=1280,1000", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.profile, "chrome.log"), "w"))
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        end = time.monotonic() + 30
        port = None
        while time.monotonic() < end and port is None:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited with %d" % self.proc.returncode)
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if lines[0].strip():
                    port = int(lines[0])
            except (OSError, ValueError):
                time.sleep(0.05)
        if port is None:
            raise RuntimeError("chromium opened no DevTools port in 30 s")
        targets = []
        while time.monotonic() < end:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if targets:
                break
            time.sleep(0.05)
        if not targets:
            raise RuntimeError("chromium has no page target")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=30,
                                              suppress_origin=True)
        self.next_id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Page.javascriptDialogOpening":
                self.ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": True}}))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("js %r: %s" % (expr, r["exceptionDetails"].get("text")))
        return r.get("result", {}).get("value")

    def wait_js(self, expr, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.js(expr):
                    return True
            except RuntimeError:
                pass  # the document is being replaced
            time.sleep(0.05)
        return False

    def loaded(self, what):
        if not self.wait_js("window.__dray_old !== true && document.readyState === 'complete'",
                            STEP_TIMEOUT_S):
            raise RuntimeError("%s: the page did not load in %.0f s" % (what, STEP_TIMEOUT_S))

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    outdir, steps = sys.argv[1], json.loads(sys.argv[2])
    exe = chromium_path()
    if not exe:
        print("chromium is missing; apt-get install chromium", file=sys.stderr)
        return SKIP
    os.makedirs(outdir, exist_ok=True)
    b = Browser(exe)
    out = []
    try:
        for st in steps:
            res = {}
            if "visit" in st:
                b.js("window.__dray_old = true")
                b.call("Page.navigate", url=st["visit"])
                b.loaded("visit " + st["visit"])
            if "pre" in st:
                res["pre"] = b.js(st["pre"])
            if "click" in st:
                sel = st["click"]
                if not b.js("document.querySelector(%s) !== null" % json.dumps(sel)):
                    raise RuntimeError("nothing matches %s on %s" % (sel, b.js("location.href")))
                b.js("window.confirm = () => true; window.__dray_old = true; "
                     "document.querySelector(%s).click(); true" % json.dumps(sel))
                b.loaded("click " + sel)
            if "wait_js" in st:
                if not b.wait_js(st["wait_js"], float(st.get("timeout", 10))):
                    raise RuntimeError("never true: %s" % st["wait_js"])
            if "eval" in st:
                res["value"] = b.js(st["eval"])
            if "shot" in st:
                png = b.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                with open(os.path.join(outdir, st["shot"]), "wb") as f:
                    f.write(base64.b64decode(png["data"]))
            res["url"] = b.js("location.href")
            res["text"] = b.js("document.body ? document.body.innerText : ''")
            out.append(res)
    finally:
        b.close()
    print("WEBUI-RESULT " + json.dumps({"steps": out}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one message on stderr, exit 1
        print("webui_driver: %s" % e, file=sys.stderr)
        sys.exit(1)
