// SPDX-License-Identifier: LGPL-3.0-or-later
// The BullMQ worker of bench/compare, run by bullmq_compare.js in its own
// process (so its peak RSS is the worker's alone), with NODE_PATH pointing at
// the temporary folder where `npm install bullmq@6` put BullMQ. It does what
// the dray worker of bench/bench_server.c does:
//
//   BENCH_MODE=incr     each job does one INCR bench:incr (one ioredis
//                       connection for the process: Node runs the jobs on one
//                       thread, and BullMQ's concurrency is jobs in flight);
//                       the job whose INCR returns N records the end, and the
//                       rate is N / (last finish - first start)
//   BENCH_MODE=latency  job.data.t is the push time (CLOCK_MONOTONIC ns, which
//                       is what process.hrtime.bigint() reads on Linux); each
//                       job records start - push; after N jobs p50/p99 are
//                       written
//
// When done it writes "key value" lines to BENCH_OUT through a rename, with
// hwm_kb (VmHWM). BullMQ logs nothing per job (no listeners are attached).
'use strict';
const fs = require('fs');
const { Worker } = require('bullmq');
const IORedis = require('ioredis');

const SOCK = process.env.BENCH_SOCK;
const MODE = process.env.BENCH_MODE;
const N = Number(process.env.BENCH_N);
const CONC = Number(process.env.BENCH_CONC);
const OUT = process.env.BENCH_OUT;
const QUEUE = process.env.BENCH_QUEUE || 'bench';

const mono = () => Number(process.hrtime.bigint()) / 1e9;

function hwmKb() {
    const m = /^VmHWM:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : -1;
}

// Nearest rank, as bench_percentile in bench/bench_common.c.
function percentile(sorted, q) {
    const rank = Math.min(Math.max(Math.ceil(q * sorted.length), 1), sorted.length);
    return sorted[rank - 1];
}

function report(fields) {
    fields.hwm_kb = hwmKb();
    const text = Object.entries(fields).map(([k, v]) => `${k} ${v}\n`).join('');
    fs.writeFileSync(OUT + '.tmp', text);
    fs.renameSync(OUT + '.tmp', OUT);
}

const incrConn = new IORedis({ path: SOCK, maxRetriesPerRequest: null });
let tFirst = null;
const lat = [];

async function processor(job) {
    if (MODE === 'latency') {
        const us = Number(process.hrtime.bigint() - BigInt(job.data.t)) / 1000;
        lat.push(us);
        if (lat.length === N) {
            const s = lat.slice().sort((a, b) => a - b);
            report({ done: s.length, p50_us: percentile(s, 0.5), p99_us: percentile(s, 0.99),
                     max_us: s[s.length - 1] });
        }
        return;
    }
    if (tFirst === null)
        tFirst = mono();
    const v = await incrConn.incr('bench:incr');
    if (v === N)
        report({ done: v, rate: N / (mono() - tFirst) });
}

const worker = new Worker(QUEUE, processor, { connection: { path: SOCK }, concurrency: CONC });
worker.on('error', (err) => console.error('bullmq worker:', err.message));
process.on('SIGTERM', () => process.exit(0));
