# SPDX-License-Identifier: LGPL-3.0-or-later
"""test_web: `dray web` against its own redis-server and a real `dray run`.

    python3 test_web.py browser|metrics|logs|statsd DRAY WEB_JOBS_SO SHOTS_DIR
    python3 test_web.py modules DRAY WEB_JOBS_SO SHOTS_DIR DRAY_LICENSE TESTKEY PRO_SO ENT_SO

browser: headless Chromium (tests/interop/webui_driver.py's Browser) walks the
pages, asserts on the DOM (a job arg holding <script> renders as text and
never runs), clicks Retry/Delete/Kill/bulk/Quiet/Stop and checks Redis after
each; CSRF, read-only, auth and paging are checked over plain HTTP.
metrics: /metrics parsed by python3-prometheus-client, every figure compared
with Redis.
logs: `dray run --log-format json` lines parse and carry the text fields.
statsd: `dray run --statsd` datagrams read by a UDP listener here; a
listener that never reads, or none, neither slows nor loses jobs.
procmetrics: `dray run --metrics-listen`'s own /metrics, parsed, with known
answers, served while Redis is down; its refusals; config-file keys.
modules: the Batches, Limits, Periodic and Unique locks pages and their
/metrics figures, from data the real Pro and Enterprise modules wrote.
Exit 0, 1 on a failed check, 77 (Skipped) when chromium, python3-websocket
or python3-prometheus-client is missing. Prints "N passed, N failed".
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))

MODE, DRAY, JOBS_SO, SHOTS = sys.argv[1:5]
PASSED = []
FAILED = []


def check(name, cond, detail=""):
    (PASSED if cond else FAILED).append(name)
    print("%s %s%s" % ("ok  " if cond else "FAIL", name, (": " + str(detail)) if not cond else ""),
          flush=True)
    return cond


def wait_for(fn, timeout=15.0, what="condition"):
    """Poll fn until truthy (returns its value) or raise after timeout."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.05)


class Redis:
    """A private redis-server on a unix socket and a minimal RESP client."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dray-web-test-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--dir", self.dir,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = "unix://" + self.sock
        wait_for(lambda: os.path.exists(self.sock) and self._try_ping(), 10, "redis-server")

    def _try_ping(self):
        try:
            return self.cmd("PING") == "PONG"
        except OSError:
            return False

    def cmd(self, *args):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        try:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return self._read(f)
        finally:
            s.close()

    def _read(self, f):
        line = f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read(f) for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)

    def kill(self):
        """SIGKILL the server (its data is gone: no persistence)."""
        self.proc.kill()
        self.proc.wait(10)
        try:
            os.unlink(self.sock)
        except OSError:
            pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Web:
    """`dray web --listen 127.0.0.1:0` with extra flags; base is its URL."""

    def __init__(self, redis, *flags):
        self.log = tempfile.NamedTemporaryFile(prefix="dray-web-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([DRAY, "web", "--listen", "127.0.0.1:0", "--redis-url",
                                      redis.url] + list(flags),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

        def port():
            if self.proc.poll() is not None:
                raise RuntimeError("dray web exited: " + open(self.log.name).read())
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", open(self.log.name).read())
            return m and int(m.group(1))
        self.base = "http://127.0.0.1:%d" % wait_for(port, 10, "dray web to listen")

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(10)
        os.unlink(self.log.name)
        return rc


def http(method, url, data=None, headers=None):
    """(status, headers, body) without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def job(klass, jid, args, **extra):
    j = {"class": klass, "args": args, "jid": jid, "queue": "default", "retry": True,
         "created_at": time.time() - 100, "enqueued_at": time.time() - 100}
    j.update(extra)
    return json.dumps(j)


XSS = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"


def seed(r):
    now = time.time()
    r.cmd("SET", "stat:processed", "1234")
    r.cmd("SET", "stat:failed", "56")
    r.cmd("SADD", "queues", "default", "low")
    r.cmd("LPUSH", "queue:default", job("Hostile", "jidxss000001", [XSS, 1]))
    r.cmd("LPUSH", "queue:low", job("LowJob", "jidlow000001", [1], queue="low"))
    for i in range(3):
        r.cmd("ZADD", "retry", now + 3600 + i,
              job("Flaky", "jidretry%04d" % i, ["FindMe%d" % i, XSS], retry_count=2,
                  error_class="RuntimeError", error_message="<b>boom</b> %d" % i,
                  failed_at=now - 60, error_backtrace=["a.c:1:in `x'", "<script>bt</script>"]))
    r.cmd("ZADD", "schedule", now + 7200, job("Later", "jidsched0001", ["later"]))
    for i in range(60):
        r.cmd("ZADD", "dead", now - 1000 + i,
              job("Gone", "jiddead%05d" % i, [i], error_class="E", error_message="dead %d" % i))


def alive(p, log):
    """True while p runs; raises with its log once it exited."""
    if p.poll() is not None:
        raise RuntimeError("dray run exited %d: %s" % (p.returncode, open(log).read()[-800:]))
    return True


def run_dray(r, *flags):
    log = tempfile.NamedTemporaryFile(prefix="dray-run-", suffix=".log", delete=False)
    p = subprocess.Popen([DRAY, "run", "--redis-url", r.url, "--require", JOBS_SO, "-q", "busy",
                          "-c", "2", "-t", "1"] + list(flags),
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    return p, log.name


def browser_test():
    try:
        import webui_driver
    except SystemExit:
        print("python3-websocket is missing: Skipped")
        return SKIP
    exe = webui_driver.chromium_path()
    if not exe:
        print("chromium is missing: Skipped")
        return SKIP
    os.makedirs(SHOTS, exist_ok=True)
    r = Redis()
    web = worker = b = None
    try:
        seed(r)
        worker, wlog = run_dray(r)
        jid_busy = subprocess.run([DRAY, "push", "WebSleep", "[600000]", "-q", "busy",
                                   "--redis-url", r.url], capture_output=True, text=True,
                                  check=True).stdout.strip()
        wait_for(lambda: r.cmd("SMEMBERS", "processes"), 15, "the worker's heartbeat")
        identity = r.cmd("SMEMBERS", "processes")[0]
        wait_for(lambda: r.cmd("HLEN", identity + ":work") == 1, 15, "the running job")
        web = Web(r, "--page-size", "25")
        b = webui_driver.Browser(exe)

        def visit(path):
            b.js("window.__dray_old = true")
            b.call("Page.navigate", url=web.base + path)
            b.loaded("visit " + path)

        def click(sel):
            check("click target exists " + sel, b.js("document.querySelector(%s) !== null"
                                                     % json.dumps(sel)))
            b.js("window.confirm = () => true; window.__dray_old = true; "
                 "document.querySelector(%s).click(); true" % json.dumps(sel))
            b.loaded("click " + sel)

        def shot(name):
            import base64
            png = b.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            with open(os.path.join(SHOTS, name), "wb") as f:
                f.write(base64.b64decode(png["data"]))

        # Dashboard: totals from Redis, queue table, the live chart polls.
        visit("/")
        check("embedded stylesheet applied", b.js("getComputedStyle(document.querySelector('nav'))"
                                                  ".backgroundColor") == "rgb(139, 26, 26)")
        check("dashboard processed", b.js("document.getElementById('s-processed').textContent")
              == "1234")
        check("dashboard failed", b.js("document.getElementById('s-failed').textContent") == "56")
        check("dashboard queues", b.js("[...document.querySelectorAll('#queues td a')]"
                                       ".map(a => a.textContent).join(',')") == "busy,default,low")
        check("live chart polled twice", b.wait_js("+document.getElementById('chart')"
                                                   ".dataset.polls >= 2", 10))
        r.cmd("INCRBY", "stat:processed", "10")
        check("live figures follow Redis", b.wait_js(
            "document.getElementById('s-processed').textContent === '1244'", 10))
        shot("dashboard.png")

        # Queue page: the <script> arg is text, never run.
        visit("/queues/default")
        args = b.js("document.querySelector('#jobs td.args').textContent")
        check("queue arg rendered as text", json.loads(args or "[]")[:1] == [XSS], args)
        check("queue arg script never ran", b.js("typeof window.__xss") == "undefined")
        check("only dray.js is a script", b.js("document.scripts.length") == 1)
        check("no injected img", b.js("document.querySelectorAll('main img').length") == 0)
        shot("queue.png")
        click("#jobs button[value=delete_job]")
        check("queue job deleted in Redis", r.cmd("LLEN", "queue:default") == 0)

        # Retries: search, detail with error and backtrace, Retry now.
        visit("/retries?q=FindMe1")
        rows = b.js("[...document.querySelectorAll('#jobs tr.job')].map(t => t.cells[3]"
                    ".textContent)")
        check("search by arg text finds one", rows == ["jidretry0001"], rows)
        visit("/retries?q=jidretry0002")
        check("search by jid", b.js("document.querySelectorAll('#jobs tr.job').length") == 1)
        visit("/retries?q=Flaky")
        check("search by class", b.js("document.querySelectorAll('#jobs tr.job').length") == 3)
        visit("/retries/jidretry0000")
        text = b.js("document.body.innerText")
        check("detail shows the error as text", "RuntimeError: <b>boom</b> 0" in text)
        check("detail shows the backtrace", "<script>bt</script>" in text)
        check("detail script never ran", b.js("typeof window.__xss") == "undefined")
        shot("retry-detail.png")
        click("#retry")
        moved = [json.loads(m) for m in r.cmd("LRANGE", "queue:default", 0, -1)]
        check("retry now pushed the job", [m["jid"] for m in moved] == ["jidretry0000"], moved)
        check("retry_count decremented", moved and moved[0].get("retry_count") == 1)
        check("retry set has 2 left", r.cmd("ZCARD", "retry") == 2)

        # Bulk delete of the two left.
        visit("/retries")
        b.js("document.getElementById('check-all').click(); true")
        click("#bulk-delete")
        check("bulk delete emptied retries", r.cmd("ZCARD", "retry") == 0)
        check("bulk flash", "delete: 2 done" in b.js("document.body.innerText"))

        # A failure dray stored with a compressed backtrace (Sidekiq's form):
        # the detail page inflates it and shows the lines as text; Delete.
        r.cmd("LPUSH", "queue:busy", json.dumps({"class": "WebFail", "args": [], "jid": "jidfail00001",
                                                 "queue": "busy", "retry": 3, "backtrace": True}))
        wait_for(lambda: r.cmd("ZCARD", "retry") == 1, 15, "WebFail in the retry set")
        stored = json.loads(r.cmd("ZRANGE", "retry", 0, 0)[0])
        check("dray stored the backtrace compressed", isinstance(stored.get("error_backtrace"), str))
        visit("/retries/jidfail00001")
        text = b.js("document.body.innerText")
        check("compressed backtrace shown", "web_jobs.c:30:in `web_fail'" in text and
              "<script>window.__bt=1</script>" in text, text)
        check("error message as text", "WebError: <i>failed</i> jidfail00001" in text)
        check("backtrace script never ran", b.js("typeof window.__bt") == "undefined")
        shot("retry-backtrace.png")
        click("#delete")
        check("delete emptied retries", r.cmd("ZCARD", "retry") == 0)

        # Queues: Pause, then the worker leaves a new job in the queue
        # (through 4 s, past the 3 s bound); Resume, and it runs.
        visit("/queues")
        b.js("document.querySelectorAll('#queues tr').forEach(t => {"
             "if (t.cells[0].textContent === 'busy') t.id = 'q-busy'; }); true")
        click("#q-busy button[value=pause]")
        check("pause reached Redis", r.cmd("SMEMBERS", "paused") == ["busy"],
              r.cmd("SMEMBERS", "paused"))
        b.js("document.querySelectorAll('#queues tr').forEach(t => {"
             "if (t.cells[0].textContent === 'busy') t.id = 'q-busy'; }); true")
        check("queue shown paused", b.js("document.querySelector('#q-busy td.state')"
                                         ".textContent") == "paused")
        check("resume button shown", b.js("document.querySelector('#q-busy button[value=resume]')"
                                          " !== null"))
        shot("queues-paused.png")
        # the worker logs when its copy turns; its next fetch leaves busy out
        check("the worker saw the pause", wait_for(
            lambda: alive(worker, wlog) and "queue busy paused" in open(wlog).read(), 10,
            "the worker to log the pause"))
        r.cmd("LPUSH", "queue:busy", job("WebOk", "jidpause0001", [], queue="busy"))
        held = True
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            alive(worker, wlog)
            held = held and r.cmd("LLEN", "queue:busy") == 1
            time.sleep(0.05)
        check("paused queue's job stays queued for 4 s", held)
        click("#q-busy button[value=resume]")
        check("resume reached Redis", r.cmd("SMEMBERS", "paused") == [])
        check("queue shown running", b.js(
            "[...document.querySelectorAll('#queues tr')].filter(t => t.cells[0].textContent"
            " === 'busy').map(t => t.querySelector('td.state').textContent).join()") == "running")
        check("resumed queue's job ran", wait_for(
            lambda: r.cmd("LLEN", "queue:busy") == 0, 15, "the job after resume"))

        # Scheduled: Kill moves the job to the dead set.
        visit("/scheduled/jidsched0001")
        click("#kill")
        check("kill left the schedule", r.cmd("ZCARD", "schedule") == 0)
        check("kill reached dead", r.cmd("ZCARD", "dead") == 61)

        # Dead: paging through Redis (25 a page, newest first).
        visit("/dead")
        first = b.js("document.querySelector('#jobs tr.job').cells[3].textContent")
        check("dead newest first", first == "jidsched0001", first)
        check("dead page 1 has 25", b.js("document.querySelectorAll('#jobs tr.job').length") == 25)
        click("a.next")
        click("a.next")
        check("dead page 3 has 11", b.js("document.querySelectorAll('#jobs tr.job').length")
              == 11)
        check("page 3 has no next", b.js("document.querySelector('a.next') === null"))
        shot("dead.png")

        # Busy: the real worker with version, threads, RSS, its running job.
        # A Sidekiq 6 process beside it: its running jobs are in "<identity>:workers".
        s6 = "zz-sidekiq6:4242:0123abcd"
        r.cmd("SADD", "processes", s6)
        r.cmd("HSET", s6, "info", json.dumps({"hostname": "zz-sidekiq6", "pid": 4242,
                                              "identity": s6, "concurrency": 5, "queues": ["q6"],
                                              "labels": [], "tag": "", "version": "6.4.1",
                                              "started_at": time.time() - 50}),
              "busy", "1", "beat", str(time.time()), "quiet", "false", "rss", "2048")
        r.cmd("HSET", s6 + ":workers", "tid6", json.dumps({
            "queue": "q6", "run_at": int(time.time()),
            "payload": {"class": "RubyJob", "jid": "jidruby00001", "args": ["<script>r</script>"]}}))
        visit("/busy")
        cells = b.js("[...[...document.querySelectorAll('#processes tr.process')].find("
                     "t => t.cells[0].textContent === %s).cells].map(c => c.textContent)"
                     % json.dumps(identity))
        ruby = b.js("[...document.querySelectorAll('#jobs tr')].map(t => t.innerText)"
                    ".filter(t => t.indexOf('jidruby00001') >= 0)")
        check("Sidekiq 6 process and its running job shown", b.js(
            "document.querySelector('#processes').innerText.indexOf('6.4.1') >= 0") and
            len(ruby) == 1 and "<script>r</script>" in ruby[0] and "RubyJob" in ruby[0], ruby)
        check("busy identity", cells and cells[0] == identity, cells)
        check("busy version", cells and cells[1].startswith("dray"), cells)
        check("busy threads", cells and cells[4] == "2", cells)
        check("busy rss", cells and int(cells[6]) > 0, cells)
        check("busy running job", b.js("document.querySelector('#jobs').innerText")
              .find(jid_busy) >= 0)
        shot("busy.png")
        b.js("document.querySelectorAll('#processes tr.process').forEach(t => {"
             "if (t.cells[0].textContent === %s) t.id = 'me'; })" % json.dumps(identity))
        click("#me button[value=quiet]")
        check("quiet reached the process", wait_for(
            lambda: json.loads(r.cmd("HGET", identity, "quiet") or "false") is True, 15,
            "the process to go quiet"))
        visit("/busy")
        b.js("document.querySelectorAll('#processes tr.process').forEach(t => {"
             "if (t.cells[0].textContent === %s) t.id = 'me'; })" % json.dumps(identity))
        click("#me button[value=stop]")
        t0 = time.monotonic()
        rc = worker.wait(20)
        check("stop stopped the worker (exit 0)", rc == 0, rc)
        print("stop took %.2f s" % (time.monotonic() - t0))
        check("the running job was requeued, not lost",
              any(json.loads(m)["jid"] == jid_busy for m in r.cmd("LRANGE", "queue:busy", 0, -1)))
        worker = None

        # CSRF: a POST without the token, with a wrong one, or cross-origin is refused.
        r.cmd("ZADD", "retry", time.time() + 60, job("Flaky", "jidcsrf00001", [1]))
        st, _, _ = http("POST", web.base + "/retries", b"action=delete&jid=jidcsrf00001")
        check("POST without CSRF token: 403", st == 403, st)
        st, _, _ = http("POST", web.base + "/retries", b"action=delete&jid=jidcsrf00001&csrf=" +
                        b"a" * 64, {"Cookie": "dray_csrf=" + "b" * 64})
        check("POST with a wrong token: 403", st == 403, st)
        st, _, _ = http("POST", web.base + "/retries", b"action=delete&jid=jidcsrf00001&csrf=" +
                        b"a" * 64, {"Cookie": "dray_csrf=" + "a" * 64,
                                    "Origin": "http://evil.example"})
        check("cross-origin POST: 403", st == 403, st)
        check("refused POSTs changed nothing", r.cmd("ZCARD", "retry") == 1)
        st, h, _ = http("POST", web.base + "/retries", b"action=delete&jid=jidcsrf00001&csrf=" +
                        b"a" * 64, {"Cookie": "dray_csrf=" + "a" * 64})
        check("POST with the token: 303", st == 303, st)
        check("... and it acted", r.cmd("ZCARD", "retry") == 0)
        st, _, _ = http("GET", web.base + "/retries?action=delete&jid=x")
        check("GET never acts", st == 200)
        web.stop()
        web = None

        # Read-only: no forms that act, and POST is refused.
        web = Web(r, "--read-only")
        r.cmd("ZADD", "retry", time.time() + 60, job("Flaky", "jidro0000001", [1]))
        visit("/retries/jidro0000001")
        check("read-only shows no action form",
              b.js("document.querySelectorAll('form[method=post]').length") == 0)
        st, _, _ = http("POST", web.base + "/retries", b"action=delete&jid=jidro0000001&csrf=" +
                        b"a" * 64, {"Cookie": "dray_csrf=" + "a" * 64})
        check("read-only POST: 403", st == 403, st)
        check("read-only kept the job", r.cmd("ZCARD", "retry") == 1)
        visit("/queues")
        check("read-only queues page has no Pause/Delete",
              b.js("document.querySelectorAll('#queues button').length") == 0 and
              b.js("document.querySelectorAll('#queues td.state').length") > 0)
        st, _, _ = http("POST", web.base + "/queues/low", b"action=pause&csrf=" + b"a" * 64,
                        {"Cookie": "dray_csrf=" + "a" * 64})
        check("read-only pause POST: 403", st == 403 and r.cmd("SCARD", "paused") == 0, st)
        web.stop()
        web = None

        # Auth: basic and bearer.
        web = Web(r, "--basic-auth", "ops:s3cret", "--token", "tok123")
        st, h, _ = http("GET", web.base + "/")
        check("no credentials: 401", st == 401 and "Basic" in h.get("WWW-Authenticate", ""), st)
        st, _, _ = http("GET", web.base + "/", headers={"Authorization": "Basic b3BzOnMzY3JldA=="})
        check("basic auth: 200", st == 200, st)
        st, _, _ = http("GET", web.base + "/", headers={"Authorization": "Basic b3BzOndyb25n"})
        check("wrong password: 401", st == 401, st)
        st, _, _ = http("GET", web.base + "/metrics", headers={"Authorization": "Bearer tok123"})
        check("bearer token: 200", st == 200, st)
        st, _, _ = http("GET", web.base + "/metrics", headers={"Authorization": "Bearer tok12"})
        check("wrong token: 401", st == 401, st)
    finally:
        if b:
            b.close()
        if web:
            web.stop()
        if worker:
            worker.kill()
            worker.wait()
        r.stop()
    return 0


def metrics_test():
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        print("python3-prometheus-client is missing: Skipped")
        return SKIP
    r = Redis()
    web = worker = None
    try:
        seed(r)
        worker, _ = run_dray(r)
        wait_for(lambda: r.cmd("SMEMBERS", "processes"), 15, "the worker's heartbeat")
        identity = r.cmd("SMEMBERS", "processes")[0]
        web = Web(r)
        st, h, body = http("GET", web.base + "/metrics")
        check("metrics 200", st == 200, st)
        check("metrics content type", h.get("Content-Type", "").startswith("text/plain; version=0.0.4"))
        fams = {f.name: f for f in text_string_to_metric_families(body)}

        def value(name, **labels):
            for fam in fams.values():
                for s in fam.samples:
                    if s.name in (name, name + "_total") and s.labels == labels:
                        return s.value
            return None
        check("processed counter", fams["dray_processed"].type == "counter" and
              fams["dray_processed"].samples[0].name == "dray_processed_total" and
              fams["dray_processed"].samples[0].value == 1234)
        check("failed counter", fams["dray_failed"].samples[0].value == 56)
        check("queue sizes", value("dray_queue_size", queue="default") == 1 and
              value("dray_queue_size", queue="low") == 1)
        check("no queue paused", value("dray_queue_paused", queue="low") == 0 and
              value("dray_queue_paused", queue="default") == 0)
        r.cmd("SADD", "paused", "low")
        st, _, body = http("GET", web.base + "/metrics")
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        check("paused queue is 1", value("dray_queue_paused", queue="low") == 1 and
              value("dray_queue_paused", queue="default") == 0)
        r.cmd("SREM", "paused", "low")
        lat = value("dray_queue_latency_seconds", queue="default")
        check("queue latency ~100 s", lat is not None and 99 < lat < 200, lat)
        check("retry size", value("dray_retry_set_size") == 3)
        check("scheduled size", value("dray_scheduled_set_size") == 1)
        check("dead size", value("dray_dead_set_size") == 60)
        check("process threads", value("dray_process_concurrency", identity=identity) == 2)
        rss = value("dray_process_rss_bytes", identity=identity)
        check("process rss", rss is not None and rss > 0, rss)
        rtt = value("dray_redis_rtt_seconds")
        check("redis rtt", rtt is not None and 0 < rtt < 1, rtt)
        # Per-class figures from the worker's Sidekiq 7 execution metrics:
        # known answers from jobs run here (5 fast, 2 of 50 ms, 1 failure).
        for klass, args, n in (("WebOk", "[]", 5), ("WebSleep", "[50]", 2),
                               ("WebFail", "[]", 1)):
            subprocess.run([DRAY, "push", klass, args, "-q", "busy", "--count", str(n),
                            "--retry", "false", "--redis-url", r.url], check=True,
                           capture_output=True)
        # The worker writes its metrics each minute and when it stops: stop it
        # once the queue is drained and nothing runs.
        wait_for(lambda: r.cmd("LLEN", "queue:busy") == 0 and r.cmd("HLEN", identity + ":work") == 0,
                 30, "the 8 jobs to run")
        worker.terminate()
        check("worker stopped cleanly", worker.wait(20) == 0)
        worker = None

        def scrape():
            st, _, body = http("GET", web.base + "/metrics")
            f = {x.name: x for x in text_string_to_metric_families(body)}
            return f if "dray_job_processed_last_hour" in f and len(
                f["dray_job_processed_last_hour"].samples) == 3 else None
        fams = wait_for(scrape, 30, "the per-class metrics of 3 classes")
        check("processed per class", value("dray_job_processed_last_hour", **{"class": "WebOk"})
              == 5 and value("dray_job_processed_last_hour", **{"class": "WebSleep"}) == 2 and
              value("dray_job_processed_last_hour", **{"class": "WebFail"}) == 1)
        check("failed per class", value("dray_job_failed_last_hour", **{"class": "WebFail"}) == 1
              and value("dray_job_failed_last_hour", **{"class": "WebOk"}) == 0)
        h = fams["dray_job_duration_last_hour_seconds"]
        check("duration is a histogram", h.type == "histogram")

        def bucket(klass, le):
            return value("dray_job_duration_last_hour_seconds_bucket", **{"class": klass, "le": le})
        check("fast jobs in the first bucket", bucket("WebOk", "0.02") == 5, bucket("WebOk", "0.02"))
        check("50 ms jobs in [45, 65) ms", bucket("WebSleep", "0.045") == 0 and
              bucket("WebSleep", "0.065") == 2, (bucket("WebSleep", "0.045"),
                                                 bucket("WebSleep", "0.065")))
        check("+Inf bucket equals count", bucket("WebSleep", "+Inf") == 2 and
              value("dray_job_duration_last_hour_seconds_count", **{"class": "WebSleep"}) == 2)
        total = value("dray_job_duration_last_hour_seconds_sum", **{"class": "WebSleep"})
        check("sum ~0.1 s", total is not None and 0.1 <= total < 0.5, total)
        check("failures not in the histogram", bucket("WebFail", "+Inf") in (None, 0))

        # Attack: Redis killed under dray web: /metrics and pages answer 502
        # with the reason (and quickly), and recover once Redis is back.
        r.kill()
        t0 = time.monotonic()
        st, _, body = http("GET", web.base + "/metrics")
        check("metrics 502 while Redis is down", st == 502 and "redis error" in body, (st, body))
        st2, _, body2 = http("GET", web.base + "/retries")
        check("page 502 while Redis is down", st2 == 502 and "Redis error" in body2, st2)
        print("502 answers in %.2f s" % (time.monotonic() - t0))
        r.start()
        seed(r)
        st, _, body = wait_for(lambda: (lambda x: x if x[0] == 200 else None)(
            http("GET", web.base + "/metrics")), 15, "dray web to reconnect")
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        check("metrics back after Redis restart", value("dray_dead_set_size") == 60)

        # A queue name that needs label escaping still parses.
        r.cmd("SADD", "queues", 'we"ird\\q')
        r.cmd("LPUSH", 'queue:we"ird\\q', job("X", "jidweird0001", [1]))
        st, _, body = http("GET", web.base + "/metrics")
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        check("escaped label parses", value("dray_queue_size", queue='we"ird\\q') == 1)
    finally:
        if web:
            web.stop()
        if worker:
            worker.terminate()
            worker.wait(20)
        r.stop()
    return 0


def logs_test():
    """--log-format json: every line one JSON object with the text format's
    fields (ts, level, thread, jid, class, elapsed_ms, msg), hostile class
    names escaped."""
    r = Redis()
    try:
        out = {}
        for fmt in ("text", "json"):
            r.cmd("FLUSHALL")
            for klass in ("WebOk", "WebFail", 'No"Such\nClass\\'):
                subprocess.run([DRAY, "push", klass, "[]", "-q", "busy", "--retry", "false",
                                "--redis-url", r.url], check=True, capture_output=True)
            p, log = run_dray(r, "--log-format", fmt, "--log-jobs")
            wait_for(lambda: alive(p, log) and r.cmd("LLEN", "queue:busy") == 0 and
                     int(r.cmd("GET", "stat:processed") or 0) >= 3, 30, "3 jobs run (" + fmt + ")")
            p.terminate()
            check("worker (%s) stopped cleanly" % fmt, p.wait(20) == 0)
            out[fmt] = open(log, "rb").read().decode("utf-8", "replace").splitlines()
            os.unlink(log)
        objs = []
        for line in out["json"]:
            try:
                objs.append(json.loads(line))
            except ValueError as e:
                check("json line parses", False, "%s: %r" % (e, line))
        check("every json line parses", len(objs) == len(out["json"]) and objs, len(objs))
        check("every line has ts, level, thread, msg",
              all({"ts", "level", "thread", "msg"} <= set(o) for o in objs))
        done = [o for o in objs if o.get("class") == "WebOk" and "elapsed_ms" in o]
        check("job line has jid, class, elapsed_ms", done and len(done[0]["jid"]) == 24, done)
        check("hostile class escaped", any(o.get("class") == 'No"Such\nClass\\' for o in objs))
        txt = [l for l in out["text"] if "class=WebOk" in l and "elapsed=" in l]
        m = txt and re.match(r"^(\S+) (\w+)\s+(\S+) jid=(\w+) class=(\S+) elapsed=[0-9.]+ms (.*)$",
                             txt[0])
        check("text job line has the same fields", m and done and m.group(2) == done[0]["level"]
              and m.group(6) == done[0]["msg"], (txt[:1], done[:1]))
        levels = sorted({o["level"] for o in objs})
        check("levels as in text", set(levels) <= {"DEBUG", "INFO", "WARN", "ERROR"}, levels)
        st = subprocess.run([DRAY, "run", "--log-format", "xml"], capture_output=True, text=True)
        check("bad --log-format is a usage error", st.returncode == 2 and "text or json"
              in st.stderr, st.stderr)
    finally:
        r.stop()
    return 0


def statsd_test():
    """dray run --statsd: Sidekiq Pro's job metrics as DogStatsD/statsd UDP,
    read by a listener here; a listener that never reads, or none at all,
    must not slow or lose a job."""
    r = Redis()
    try:
        def run_jobs(flags, jobs, want_processed):
            r.cmd("FLUSHALL")
            for klass, args, n in jobs:
                subprocess.run([DRAY, "push", klass, args, "-q", "busy", "--count", str(n),
                                "--retry", "false", "--redis-url", r.url], check=True,
                               capture_output=True)
            t0 = time.monotonic()
            p, log = run_dray(r, *flags)
            # Timed until the queue is drained; then until the heartbeat
            # (every 5 s) shows nothing running, so the stop requeues nothing.
            wait_for(lambda: alive(p, log) and r.cmd("LLEN", "queue:busy") == 0, 60,
                     "the queue to drain")
            took = time.monotonic() - t0
            wait_for(lambda: alive(p, log) and r.cmd("SMEMBERS", "processes") and
                     r.cmd("HLEN", r.cmd("SMEMBERS", "processes")[0] + ":work") == 0,
                     60, "the jobs to finish")
            p.terminate()
            rc = p.wait(20)
            text = open(log).read()
            os.unlink(log)
            check("worker stopped cleanly (%s)" % " ".join(flags), rc == 0, text[-500:])
            got = int(r.cmd("GET", "stat:processed") or 0)
            check("every job ran: %d of %d" % (got, want_processed), got == want_processed)
            return took

        def listener(rcvbuf=0):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if rcvbuf:
                u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            u.bind(("127.0.0.1", 0))
            return u

        def drain(u, until, timeout=15):
            lines = []
            u.settimeout(0.2)
            end = time.monotonic() + timeout
            while time.monotonic() < end and not until(lines):
                try:
                    lines += u.recv(65536).decode().split("\n")
                except socket.timeout:
                    pass
            return lines

        # DogStatsD (the default): tags worker and queue.
        u = listener()
        run_jobs(["--statsd", "127.0.0.1:%d" % u.getsockname()[1]],
                 [("WebOk", "[]", 3), ("WebFail", "[]", 1)], 4)
        lines = drain(u, lambda ls: sum(l.startswith("jobs.count:") for l in ls) >= 4)
        ok_tag, fail_tag = "|#worker:WebOk,queue:busy", "|#worker:WebFail,queue:busy"
        check("dogstatsd jobs.count", lines.count("jobs.count:1|c" + ok_tag) == 3 and
              lines.count("jobs.count:1|c" + fail_tag) == 1, lines)
        check("dogstatsd jobs.success", lines.count("jobs.success:1|c" + ok_tag) == 3)
        check("dogstatsd jobs.failure", lines.count("jobs.failure:1|c" + fail_tag) == 1)
        perf = [l for l in lines if l.startswith("jobs.perform:")]
        check("dogstatsd jobs.perform timings", len(perf) == 4 and all(
            re.match(r"^jobs\.perform:[0-9.]+\|ms\|#worker:Web(Ok|Fail),queue:busy$", l)
            for l in perf), perf)
        u.close()

        # Gauges each heartbeat: busy threads and the worker's queue sizes.
        u = listener()
        r.cmd("FLUSHALL")
        subprocess.run([DRAY, "push", "WebSleep", "[600000]", "-q", "busy", "--count", "3",
                        "--redis-url", r.url], check=True, capture_output=True)
        p, log = run_dray(r, "--statsd", "127.0.0.1:%d" % u.getsockname()[1], "--set",
                          "heartbeat=1", "-q", "other")
        want = ("jobs.busy:2|g", "queue.size:1|g|#queue:busy", "queue.size:0|g|#queue:other")
        lines = drain(u, lambda ls: all(w in ls for w in want), 20)
        check("dogstatsd gauges: busy 2, queue sizes 1 and 0", all(w in lines for w in want),
              [l for l in lines if "|g" in l][-6:])
        r.cmd("LPUSH", "queue:other", "x", "y")  # not jobs: the gauge only counts
        lines = drain(u, lambda ls: "queue.size:2|g|#queue:other" in ls, 20)
        check("queue size gauge follows Redis", "queue.size:2|g|#queue:other" in lines)
        r.cmd("DEL", "queue:other")
        p.terminate()
        check("gauge worker stopped cleanly", p.wait(20) == 0, open(log).read()[-300:])
        os.unlink(log)
        u.close()

        # Plain statsd with a prefix: per-class names, a 30 ms job timed.
        u = listener()
        run_jobs(["--statsd", "127.0.0.1:%d" % u.getsockname()[1], "--statsd-format", "statsd",
                  "--statsd-prefix", "app."], [("WebSleep", "[30]", 2)], 2)
        lines = drain(u, lambda ls: sum(l.startswith("app.jobs.WebSleep.perform:") for l in ls)
                      >= 2)
        times = [float(l.split(":")[1].split("|")[0]) for l in lines
                 if l.startswith("app.jobs.WebSleep.perform:")]
        check("statsd per-class timing >= 30 ms", len(times) == 2 and min(times) >= 30, times)
        check("statsd counters", lines.count("app.jobs.count:1|c") == 2 and
              lines.count("app.jobs.success:1|c") == 2 and
              lines.count("app.jobs.WebSleep.success:1|c") == 2, lines)
        u.close()

        # Attack: a listener that never reads (its buffer fills at once), then
        # none at all (ICMP refusals): 2000 jobs each, none lost, none stuck.
        n = 2000
        base = run_jobs([], [("WebOk", "[]", n)], n)
        stalled = listener(rcvbuf=1024)
        took_stall = run_jobs(["--statsd", "127.0.0.1:%d" % stalled.getsockname()[1]],
                              [("WebOk", "[]", n)], n)
        gone = listener()
        port = gone.getsockname()[1]
        gone.close()
        took_gone = run_jobs(["--statsd", "127.0.0.1:%d" % port], [("WebOk", "[]", n)], n)
        print("2000 jobs: no statsd %.2f s, stalled listener %.2f s, no listener %.2f s"
              % (base, took_stall, took_gone))
        check("a stalled listener does not slow jobs down (< 3x + 2 s)",
              took_stall < 3 * base + 2, (base, took_stall))
        check("an absent listener does not slow jobs down (< 3x + 2 s)",
              took_gone < 3 * base + 2, (base, took_gone))
        stalled.close()
        st = subprocess.run([DRAY, "run", "--redis-url", r.url, "--require", JOBS_SO,
                             "--statsd", "no-such-host.invalid:8125"], capture_output=True,
                            text=True, timeout=60)
        check("unresolvable statsd host is a config error (exit 4)", st.returncode == 4 and
              "statsd: cannot resolve" in st.stderr, (st.returncode, st.stderr))
    finally:
        r.stop()
    return 0


def modules_test():
    """Module pages and figures from data the real Pro and Enterprise modules
    write (a limiter of each use, a periodic loop and its leader, unique locks
    from `dray push`), batches as Pro writes their keys (docs/redis-keys.md;
    the batch API is C only); then a wrong-type key answers a clear error."""
    try:
        import webui_driver
        from prometheus_client.parser import text_string_to_metric_families
    except (SystemExit, ImportError):
        print("python3-websocket or python3-prometheus-client is missing: Skipped")
        return SKIP
    exe = webui_driver.chromium_path()
    if not exe:
        print("chromium is missing: Skipped")
        return SKIP
    tool, key, pro_so, ent_so = sys.argv[5:9]
    os.makedirs(SHOTS, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="dray-webmod-")
    r = Redis()
    web = worker = b = None
    try:
        lic = subprocess.run([tool, "issue", "--key", key, "--sub", "Web Test", "--tier",
                              "enterprise", "--expires", "2099-12-31", "--ledger",
                              os.path.join(tmp, "ledger")], capture_output=True, text=True,
                             env=dict(os.environ, DRAY_LICENSE_PASSPHRASE=os.environ.get(
                                 "DRAY_LICENSE_PASSPHRASE", "dray-throwaway-test-passphrase")))
        check("license issued", lic.returncode == 0, lic.stderr)
        with open(os.path.join(tmp, "license"), "w") as f:
            f.write(lic.stdout)
        conf = os.path.join(tmp, "dray.conf")
        with open(conf, "w") as f:
            f.write("module %s\nmodule %s\nlicense_file %s\n" % (pro_so, ent_so,
                                                                 os.path.join(tmp, "license")))
            f.write("heartbeat 1\n")
            f.write("enterprise.limiter sleepers concurrent 1 class=WebSleep lock_timeout=600\n")
            f.write("enterprise.limiter oks window 100/60s class=WebOk\n")
            f.write("enterprise.periodic 0 0 1 1 * WebOk name=new-year queue=busy\n")
            f.write("enterprise.unique WebSleep for=1h\n")
        web = Web(r)
        b = webui_driver.Browser(exe)

        def visit(path):
            b.js("window.__dray_old = true")
            b.call("Page.navigate", url=web.base + path)
            b.loaded("visit " + path)

        def shot(name):
            import base64
            png = b.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            with open(os.path.join(SHOTS, name), "wb") as f:
                f.write(base64.b64decode(png["data"]))

        def nav():
            return b.js("[...document.querySelectorAll('nav a')].map(a => a.textContent).join()")
        visit("/")
        check("no module pages without module data", "Batches" not in nav() and
              "Limits" not in nav() and "Periodic" not in nav() and "Unique" not in nav(), nav())
        st, _, body = http("GET", web.base + "/metrics")
        check("no module figures without module data", st == 200 and "dray_batch" not in body and
              "dray_limiter" not in body and "dray_unique" not in body)

        log = os.path.join(tmp, "run.log")
        worker = subprocess.Popen([DRAY, "run", "-C", conf, "--redis-url", r.url, "--require",
                                   JOBS_SO, "-q", "busy", "-c", "3", "-t", "1"],
                                  stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                                  stderr=subprocess.STDOUT)

        def push(klass, args):
            out = subprocess.run([DRAY, "push", klass, args, "-q", "busy", "-C", conf,
                                  "--redis-url", r.url], capture_output=True, text=True)
            check("push " + klass + " " + args, out.returncode == 0, out.stderr)
            return out.stdout.strip()
        for _ in range(3):
            push("WebOk", "[]")
        sleep1 = push("WebSleep", "[600000]")
        sleep2 = push("WebSleep", "[600001]")  # concurrent limit 1: over the limit
        wait_for(lambda: alive(worker, log) and r.cmd("HGET", "ent:lmtr:oks", "taken") == "3",
                 20, "3 WebOk through the window limiter")
        wait_for(lambda: alive(worker, log) and int(r.cmd("HGET", "ent:lmtr:sleepers",
                                                          "overages") or 0) >= 1,
                 20, "the second WebSleep refused by the concurrent limiter")
        wait_for(lambda: alive(worker, log) and r.cmd("GET", "dear-leader") and
                 r.cmd("HGET", "ent:periodic:new-year", "next"), 30, "a periodic leader")
        leader = r.cmd("GET", "dear-leader")
        nxt = float(r.cmd("HGET", "ent:periodic:new-year", "next"))
        locks = sorted(k[len("ent:unique:"):] for k in r.cmd("KEYS", "ent:unique:*"))
        owners = sorted(r.cmd("HGET", "ent:unique:" + d, "jid") for d in locks)
        check("two unique locks, owned by the pushed jobs", owners == sorted([sleep1, sleep2]),
              owners)

        # Batches as pro/src/batch_lua.h writes them: one running with a hostile
        # description (2 of 5 pending, 1 failure), one succeeded.
        now = time.time()
        r.cmd("ZADD", "pro:batches", now - 10, "bidrunning01", now - 5, "bidsuccess01")
        r.cmd("HSET", "pro:batch:bidrunning01", "bid", "bidrunning01", "description", XSS,
              "created_at", str(now - 10), "committed_at", str(now - 9), "total", "5",
              "parent", "", "version", "1")
        r.cmd("SADD", "pro:batch:bidrunning01:pending", "j1", "j2")
        r.cmd("SADD", "pro:batch:bidrunning01:incomplete", "j1")
        r.cmd("SADD", "pro:batch:bidrunning01:failed", "j2")
        r.cmd("HSET", "pro:batch:bidsuccess01", "bid", "bidsuccess01", "description", "done",
              "created_at", str(now - 5), "committed_at", str(now - 5), "total", "2",
              "complete_at", str(now - 1), "success_at", str(now - 1), "parent", "bidrunning01",
              "version", "1")
        r.cmd("SET", "pro:stat:batch:success", "1")
        r.cmd("SET", "pro:stat:batch:complete", "1")

        visit("/")
        check("module pages in the menu", all(x in nav() for x in ("Batches", "Limits",
                                                                   "Periodic", "Unique locks")),
              nav())
        visit("/batches")
        rows = b.js("[...document.querySelectorAll('#batches tr.batch')].map(t => [...t.cells]"
                    ".map(c => c.textContent))")
        check("batches newest first", [x[0] for x in rows] == ["bidsuccess01", "bidrunning01"],
              rows)
        run = rows[1] if len(rows) == 2 else [""] * 10
        check("running batch: status, progress, pending, failures",
              run[2] == "running" and run[3].strip() == "60%" and run[4] == "5" and
              run[5] == "2" and run[6] == "1", run)
        check("batch description rendered as text", run[1] == XSS, run[1])
        check("batch description never ran", b.js("typeof window.__xss") == "undefined")
        check("succeeded batch", rows and rows[0][2] == "success" and rows[0][3].strip() ==
              "100%" and rows[0][9] == "bidrunning01", rows and rows[0])
        shot("batches.png")

        visit("/limits")
        lim = {x[0]: x for x in b.js("[...document.querySelectorAll('#limits tr.limiter')].map("
                                     "t => [...t.cells].map(c => c.textContent))")}
        sl = lim.get("sleepers", [""] * 8)
        check("concurrent limiter: in use 1 of 1, over the limit as Redis says",
              sl[1] == "concurrent" and float(sl[2] or -1) == 1 and sl[3] == "1" and
              sl[6] == r.cmd("HGET", "ent:lmtr:sleepers", "overages"), sl)
        ok = lim.get("oks", [""] * 8)
        check("window limiter: 3 in the window, 3 taken", ok[1] == "window" and
              float(ok[2] or -1) == 3 and ok[3] == "100" and ok[5] == "3", ok)
        shot("limits.png")

        visit("/periodic")
        check("periodic leader", b.js("document.getElementById('leader').textContent") == leader)
        loop = b.js("[...document.querySelector('#periodic tr.loop').cells].map(c => c.textContent)")
        want_next = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(nxt))
        check("periodic loop, cron and next run", loop and loop[0] == "new-year" and
              loop[1] == "0 0 1 1 *" and loop[2] == "WebOk" and loop[6] == want_next,
              (loop, want_next))
        shot("periodic.png")

        visit("/unique")
        rows = b.js("[...document.querySelectorAll('#unique tr.lock')].map(t => [...t.cells]"
                    ".map(c => c.textContent))")
        check("unique locks: digests and owners", sorted(x[0] for x in rows) == locks and
              sorted(x[1] for x in rows) == owners, rows)
        check("unique lock TTL about 1 h", rows and all(3000 < float(x[3]) <= 3600 for x in rows),
              rows)
        shot("unique.png")

        st, _, body = http("GET", web.base + "/metrics")
        fams = {f.name: f for f in text_string_to_metric_families(body)}

        def value(name, **labels):
            for fam in fams.values():
                for smp in fam.samples:
                    if smp.name in (name, name + "_total") and smp.labels == labels:
                        return smp.value
            return None
        check("dray_batches", value("dray_batches") == 2)
        check("batch pending/failed", value("dray_batch_jobs_pending") == 2 and
              value("dray_batch_jobs_failed") == 1 and value("dray_batch_jobs_dead") == 0)
        check("batch callbacks counter", fams.get("dray_batch_callbacks") and
              fams["dray_batch_callbacks"].type == "counter" and
              value("dray_batch_callbacks_total", event="success") == 1)
        check("limiter in use", value("dray_limiter_in_use", limiter="sleepers") == 1)
        check("limiter taken", value("dray_limiter_taken_total", limiter="oks") == 3)
        check("limiter over limit = Redis", value("dray_limiter_over_limit_total",
                                                  limiter="sleepers") ==
              int(r.cmd("HGET", "ent:lmtr:sleepers", "overages")))
        check("periodic next run", value("dray_periodic_next_run_timestamp_seconds",
                                         loop="new-year") == nxt)
        check("periodic leader", value("dray_periodic_leader", identity=leader) == 1)
        check("unique locks", value("dray_unique_locks") == 2)

        # Paging through Redis, one row a page.
        web.stop()
        web = Web(r, "--page-size", "1")
        visit("/batches")
        first = b.js("[...document.querySelectorAll('#batches tr.batch')].map(t => t.cells[0]"
                     ".textContent)")
        check("batches page 1 of 2", first == ["bidsuccess01"] and
              b.js("document.querySelector('a.next') !== null"), first)
        visit("/batches?page=1")
        second = b.js("[...document.querySelectorAll('#batches tr.batch')].map(t => t.cells[0]"
                      ".textContent)")
        check("batches page 2 of 2", second == ["bidrunning01"] and
              b.js("document.querySelector('a.next') === null"), second)
        visit("/unique")
        got = b.js("[...document.querySelectorAll('#unique tr.lock')].map(t => t.cells[0]"
                   ".textContent)")
        more = b.js("document.querySelector('a.next') && document.querySelector('a.next').href")
        while more and len(got) < 5:
            visit(more[len(web.base):])
            got += b.js("[...document.querySelectorAll('#unique tr.lock')].map(t => t.cells[0]"
                        ".textContent)")
            more = b.js("document.querySelector('a.next') && "
                        "document.querySelector('a.next').href")
        check("unique locks paged by SCAN cursor, each once", sorted(got) == locks, got)

        # A bad byte: pro:batches of the wrong type. The page says so (502
        # with Redis's words); the rest of the dashboard and /metrics go on.
        r.cmd("DEL", "pro:batches")
        r.cmd("SET", "pro:batches", "not a zset")
        st, _, body = http("GET", web.base + "/batches")
        check("wrong-type batches index: 502 naming WRONGTYPE", st == 502 and "WRONGTYPE" in body,
              (st, body[:200]))
        st, _, body = http("GET", web.base + "/metrics")
        check("metrics still served without the module figures", st == 200 and
              "dray_processed_total" in body and "dray_batches" not in body, st)
        st, _, _ = http("GET", web.base + "/limits")
        check("other module pages unaffected", st == 200, st)
    finally:
        if b:
            b.close()
        if web:
            web.stop()
        if worker:
            worker.kill()
            worker.wait()
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def procmetrics_test():
    """`dray run --metrics-listen`: the worker's own /metrics, parsed by the
    Prometheus parser, against jobs it ran here (known answers); it answers
    from memory while Redis is down; bad addresses, a taken port and
    --processes are refused with a clear error; the config file keys
    metrics_listen, log_format and statsd* work like their flags."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        print("python3-prometheus-client is missing: Skipped")
        return SKIP
    r = Redis()
    tmp = tempfile.mkdtemp(prefix="dray-procmetrics-")
    worker = None
    try:
        conf = os.path.join(tmp, "dray.conf")
        with open(conf, "w") as f:
            f.write("metrics_listen 127.0.0.1:0\nheartbeat 1\nlog_format json\n")
        log = os.path.join(tmp, "run.log")
        worker = subprocess.Popen([DRAY, "run", "-C", conf, "--redis-url", r.url, "--require",
                                   JOBS_SO, "-q", "busy", "-c", "2", "-t", "1"],
                                  stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                                  stderr=subprocess.STDOUT)

        def port():
            alive(worker, log)
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", open(log).read())
            return m and int(m.group(1))
        base = "http://127.0.0.1:%d" % wait_for(port, 15, "the metrics endpoint")
        fams = {}

        def scrape():
            st, h, body = http("GET", base + "/metrics")
            check("metrics 200 text/plain 0.0.4", st == 200 and h.get("Content-Type", "")
                  .startswith("text/plain; version=0.0.4"), st)
            fams.clear()
            fams.update({f.name: f for f in text_string_to_metric_families(body)})
            return fams

        def value(name, **labels):
            for fam in fams.values():
                for smp in fam.samples:
                    if smp.name == name and smp.labels == labels:
                        return smp.value
            return None
        scrape()
        check("nothing processed yet", value("dray_process_processed_total") == 0)
        check("concurrency", value("dray_process_concurrency") == 2)
        for klass, args, n in (("WebOk", "[]", 5), ("WebSleep", "[50]", 2),
                               ("WebFail", "[]", 1)):
            subprocess.run([DRAY, "push", klass, args, "-q", "busy", "--count", str(n),
                            "--retry", "false", "--redis-url", r.url], check=True,
                           capture_output=True)
        wait_for(lambda: alive(worker, log) and scrape() and
                 value("dray_process_processed_total") == 8, 30, "8 jobs counted")
        check("processed 8 (failures included), failed 1", value("dray_process_failed_total")
              == 1)
        check("per class processed", value("dray_process_jobs_processed_total", **{
            "class": "WebOk"}) == 5 and value("dray_process_jobs_processed_total", **{
                "class": "WebSleep"}) == 2 and value("dray_process_jobs_failed_total", **{
                    "class": "WebFail"}) == 1)
        h = fams.get("dray_process_job_duration_seconds")
        check("duration is a histogram", h is not None and h.type == "histogram")
        # (a loaded machine may run them slower: only lower bounds are exact)
        check("WebSleep 50 ms: none under 45 ms, both by +Inf", value(
            "dray_process_job_duration_seconds_bucket", **{"class": "WebSleep", "le": "0.045"})
              == 0 and value("dray_process_job_duration_seconds_bucket",
                             **{"class": "WebSleep", "le": "+Inf"}) == 2)
        check("WebOk count 5, all under 335 ms", value(
            "dray_process_job_duration_seconds_bucket", **{"class": "WebOk", "le": "0.335"}) == 5
              and value("dray_process_job_duration_seconds_count", **{"class": "WebOk"}) == 5)
        ssum = value("dray_process_job_duration_seconds_sum", **{"class": "WebSleep"})
        check("WebSleep sum at least 0.1 s", ssum is not None and 0.099 <= ssum < 5, ssum)
        check("a failure has no duration", value("dray_process_job_duration_seconds_count",
                                                  **{"class": "WebFail"}) == 0)
        wait_for(lambda: scrape() and (value("dray_process_redis_rtt_seconds") or -1) >= 0, 15,
                 "a heartbeat's RTT")
        rtt = value("dray_process_redis_rtt_seconds")
        check("redis rtt from the heartbeat", 0 <= rtt < 1, rtt)
        identity = r.cmd("SMEMBERS", "processes")[0]
        check("identity label", [smp.labels.get("identity") for smp in
                                 fams["dray_process_info"].samples] == [identity])
        subprocess.run([DRAY, "push", "WebSleep", "[600000]", "-q", "busy", "--redis-url",
                        r.url], check=True, capture_output=True)
        wait_for(lambda: scrape() and value("dray_process_busy_threads") == 1, 15, "busy 1")
        check("busy threads 1", value("dray_process_busy_threads") == 1)
        check("json log lines from the config's log_format", all(
            json.loads(x) for x in open(log).read().splitlines() if x.startswith("{")) and
              any(x.startswith("{") for x in open(log).read().splitlines()))

        # Redis killed: the endpoint answers from memory, same counts, at once.
        r.kill()
        t0 = time.monotonic()
        scrape()
        took = time.monotonic() - t0
        check("answers without Redis, same counts", value("dray_process_processed_total") == 8
              and value("dray_process_busy_threads") == 1, took)
        check("... in under 1 s", took < 1.0, took)
        st, _, _ = http("POST", base + "/metrics", b"x=1")
        check("POST refused 405", st == 405, st)
        st, _, _ = http("GET", base + "/other")
        check("other path 404", st == 404, st)
        r.start()
        worker.terminate()
        check("worker stops cleanly with the endpoint up", worker.wait(30) == 0)
        worker = None
        st = None
        try:
            http("GET", base + "/metrics")
        except OSError:
            st = "closed"
        check("endpoint closed after stop", st == "closed")

        def run_fail(args, want_rc, want_text, extra_conf=None):
            cf = os.path.join(tmp, "x.conf")
            with open(cf, "w") as f:
                f.write(extra_conf or "")
            p = subprocess.run([DRAY, "run", "-C", cf, "--redis-url", r.url, "--require",
                                JOBS_SO] + args, capture_output=True, text=True, timeout=30)
            check("exit %d: %s" % (want_rc, want_text), p.returncode == want_rc and
                  want_text in p.stderr, (p.returncode, p.stderr[-300:]))
        run_fail(["--metrics-listen", "nonsense:port"], 4, "want PORT, HOST:PORT or [IPv6]:PORT")
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        run_fail(["--metrics-listen", "127.0.0.1:%d" % taken.getsockname()[1]], 1,
                 "cannot listen on 127.0.0.1:%d" % taken.getsockname()[1])
        taken.close()
        run_fail(["--metrics-listen", "0", "--processes", "2"], 4, "not with processes")
        run_fail([], 4, "log_format must be text or json, not 'xml'", "log_format xml\n")
        run_fail([], 4, "statsd_format must be dogstatsd or statsd", "statsd_format nope\n")
        run_fail([], 4, "statsd: cannot resolve", "statsd no-such-host.invalid:8125\n")
    finally:
        if worker:
            worker.kill()
            worker.wait()
        r.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main():
    if shutil.which("redis-server") is None:
        print("redis-server is missing: Skipped")
        return SKIP
    rc = {"browser": browser_test, "metrics": metrics_test, "logs": logs_test,
          "statsd": statsd_test, "modules": modules_test,
          "procmetrics": procmetrics_test}[MODE]()
    if rc == SKIP:
        return SKIP
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
