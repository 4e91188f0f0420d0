# SPDX-License-Identifier: LGPL-3.0-or-later
# bench/compare/run's table: reads "run<TAB>engine<TAB>metric<TAB>value" lines
# and prints the medians per engine, the targets of issue 7 for dray, the
# ratios dray/Sidekiq, dray/BullMQ and dray/Redis-ceiling, and the spread.
# Variables: runs, smoke, sk/bq (on|off|skipped), skver/bqver, skwhy/bqwhy.

function isort(a, n,    i, j, t) {
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
}

# The median of engine e's metric m, or "" when there is no sample. The push
# rates are the client's, measured once per run under engine "dray": both
# dray columns show that one measurement.
function med(e, m,    n, i, a) {
    if (!((e, m) in cnt) && e ~ /^dray\.fb/ && m ~ /^push\./)
        e = "dray"
    if (!((e, m) in cnt))
        return ""
    n = cnt[e, m]
    for (i = 1; i <= n; i++) a[i] = val[e, m, i]
    isort(a, n)
    lo[e, m] = a[1]; hi[e, m] = a[n]
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

function spread(e, m) {
    if (!((e, m) in cnt) && e ~ /^dray\.fb/ && m ~ /^push\./)
        e = "dray"
    if (!((e, m) in cnt))
        return "-"
    med(e, m)
    return fmt(lo[e, m], m) ".." fmt(hi[e, m], m)
}

function fmt(v, m) {
    if (v == "") return "-"
    if (m ~ /^rss/) return sprintf("%.1f", v)
    if (m ~ /^p(50|99)/) return sprintf("%.0f", v)
    return sprintf("%.0f", v)
}

function ratio(a, b) {
    if (a == "" || b == "" || b + 0 == 0) return "-"
    return (a / b >= 10 ? sprintf("%.1fx", a / b) : sprintf("%.2fx", a / b))
}

# "met" or "MISSED" for value v against target t (">=N" or "<=N").
function verdict(v, t,    lim) {
    if (t == "-" || v == "") return "-"
    lim = substr(t, 3) + 0
    if (substr(t, 1, 2) == ">=") return v >= lim ? "met" : "MISSED"
    return v <= lim ? "met" : "MISSED"
}

function peercol(status, e, m) {
    if (status == "skipped") return "skipped"
    if (status != "on") return "-"
    return fmt(med(e, m), m)
}

{
    cnt[$2, $3]++
    val[$2, $3, cnt[$2, $3]] = $4
}

END {
    nrow = split("thr.c10 thr.c25 rss.c10 rss.c25 p50.c10 p99.c10 p50.c25 p99.c25 push.bulk push.single", rows, " ")
    label["thr.c10"] = "throughput c=10 (jobs/s)"
    label["thr.c25"] = "throughput c=25 (jobs/s)"
    label["rss.c10"] = "peak RSS c=10 (MiB)"
    label["rss.c25"] = "peak RSS c=25 (MiB)"
    label["p50.c10"] = "push->start p50 c=10 (us)"
    label["p99.c10"] = "push->start p99 c=10 (us)"
    label["p50.c25"] = "push->start p50 c=25 (us)"
    label["p99.c25"] = "push->start p99 c=25 (us)"
    label["push.bulk"] = "bulk enqueue (jobs/s)"
    label["push.single"] = "single push (jobs/s)"
    target["thr.c10"] = ">=50000"; target["thr.c25"] = ">=50000"
    target["rss.c10"] = "-";       target["rss.c25"] = "<=8"
    target["p50.c10"] = "<=120";   target["p99.c10"] = "<=400"
    target["p50.c25"] = "<=120";   target["p99.c25"] = "<=400"
    target["push.bulk"] = ">=500000"; target["push.single"] = ">=15000"

    skname = sk == "on" ? "Sidekiq " skver : "Sidekiq"
    bqname = bq == "on" ? "BullMQ " bqver : "BullMQ"
    hdr = "%-27s %10s %10s %14s %13s %10s %9s  %s\n"
    printf hdr, "metric", "dray fb=1", "dray fb=8", skname, bqname, "Redis ceil", "target", "dray fb=1 / fb=8"
    for (k = 1; k <= nrow; k++) {
        m = rows[k]
        d1 = med("dray.fb1", m); d8 = med("dray.fb8", m)
        ceil = m ~ /^thr/ ? fmt(med("ceiling", m), m) : "-"
        t = smoke ? "-" : target[m]
        v = t == "-" ? "" : verdict(d1, t) " / " verdict(d8, t)
        printf hdr, label[m], fmt(d1, m), fmt(d8, m), peercol(sk, "sidekiq", m), peercol(bq, "bullmq", m), ceil, t, v
    }
    if (sk == "skipped") printf "Sidekiq skipped: %s\n", skwhy
    if (bq == "skipped") printf "BullMQ skipped: %s\n", bqwhy
    print "dray fb=1: fetch_batch 1, one BRPOP per job (Sidekiq's semantics); fb=8: up to 8 jobs per fetch"
    print "round trip while the queue is busy (a graceful stop pushes fetched, unstarted jobs back to the"
    print "head of the queue; a SIGKILL loses them). Push rates are the client's: one measurement, shown"
    print "in both dray columns. RSS is the worker process's VmHWM. Lower is better for RSS and latency."

    print ""
    print "== ratios of medians (dray / peer; above 1 is better for dray in throughput and push rates,"
    print "   below 1 is better for dray in RSS and latency)"
    rhdr = "%-27s %13s %13s %13s %13s %13s %13s\n"
    printf rhdr, "metric", "fb=1/Sidekiq", "fb=8/Sidekiq", "fb=1/BullMQ", "fb=8/BullMQ", "fb=1/ceiling", "fb=8/ceiling"
    for (k = 1; k <= nrow; k++) {
        m = rows[k]
        d1 = med("dray.fb1", m); d8 = med("dray.fb8", m)
        s = sk == "on" ? med("sidekiq", m) : ""
        b = bq == "on" ? med("bullmq", m) : ""
        c = m ~ /^thr/ ? med("ceiling", m) : ""
        printf rhdr, label[m], ratio(d1, s), ratio(d8, s), ratio(d1, b), ratio(d8, b), ratio(d1, c), ratio(d8, c)
    }
    print "The ceiling is 1/(1/RPOP + 1/INCR) from redis-benchmark at the same concurrency: two round"
    print "trips per job. fetch_batch 8 spends about 1 + 1/8 round trips per job, so it can pass it."

    print ""
    print "== spread (min..max over the runs)"
    shdr = "%-27s %16s %16s %16s %16s %16s\n"
    printf shdr, "metric", "dray fb=1", "dray fb=8", "Sidekiq", "BullMQ", "Redis ceil"
    short = 0
    for (k = 1; k <= nrow; k++) {
        m = rows[k]
        printf shdr, label[m], spread("dray.fb1", m), spread("dray.fb8", m),
            sk == "on" ? spread("sidekiq", m) : "-", bq == "on" ? spread("bullmq", m) : "-",
            m ~ /^thr/ ? spread("ceiling", m) : "-"
        if ((("dray.fb1", m) in cnt) && cnt["dray.fb1", m] < runs) short = 1
        if (sk == "on" && (("sidekiq", m) in cnt) && cnt["sidekiq", m] < runs) short = 1
        if (bq == "on" && (("bullmq", m) in cnt) && cnt["bullmq", m] < runs) short = 1
    }
    if (short) printf "(some figures have fewer than %d samples: a run failed its checks)\n", runs
}
