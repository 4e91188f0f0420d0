// SPDX-License-Identifier: LGPL-3.0-or-later
// BullMQ's driver for bench/compare/run, the counterpart of dray_compare.c:
//
//   node bullmq_compare.js push SOCK NSINGLE NBULK
//   node bullmq_compare.js throughput SOCK CONC N
//   node bullmq_compare.js latency SOCK CONC N GAP_US
//
// NODE_PATH must name the node_modules folder holding bullmq (the harness
// installs it into a temporary folder). The producer side is Queue.add and
// Queue.addBulk; the worker is bullmq_worker.js in its own process. Jobs are
// added with removeOnComplete/removeOnFail, so BullMQ, like Sidekiq and dray,
// keeps nothing of a finished job. Output: "RESULT<TAB>metric<TAB>value"
// lines and "# " prose; exit status 1 when a run fails its checks. Every mode
// starts with FLUSHALL.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const { Queue } = require('bullmq');
const IORedis = require('ioredis');

const QUEUE = 'bench';
const JOB_OPTS = { removeOnComplete: true, removeOnFail: true };
const WORKER_TIMEOUT_S = 600;
const IDLE_WAIT_S = 20;

const [mode, sock] = process.argv.slice(2, 4);
const num = (i) => Number(process.argv[i]);
const mono = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function result(metric, value) {
    process.stdout.write(`RESULT\t${metric}\t${value}\n`);
}

async function blockedClients(ctl) {
    const m = /blocked_clients:(\d+)/.exec(await ctl.info('clients'));
    return m ? Number(m[1]) : 0;
}

function spawnWorker(workerMode, conc, n) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dray-compare-bullmq-'));
    const out = path.join(dir, 'out');
    const log = fs.openSync(path.join(dir, 'log'), 'w');
    const env = { ...process.env, BENCH_SOCK: sock, BENCH_MODE: workerMode, BENCH_N: String(n),
                  BENCH_CONC: String(conc), BENCH_OUT: out, BENCH_QUEUE: QUEUE };
    const child = spawn(process.execPath, [path.join(__dirname, 'bullmq_worker.js')],
                        { env, stdio: ['ignore', log, log] });
    let exited = false;
    child.on('exit', () => { exited = true; });
    return { child, out, dir, exited: () => exited };
}

// Wait for the worker's report; returns it (an object of numbers) or null.
async function waitReport(w) {
    const deadline = mono() + WORKER_TIMEOUT_S;
    while (mono() < deadline && !w.exited()) {
        if (fs.existsSync(w.out)) {
            const rep = {};
            for (const line of fs.readFileSync(w.out, 'utf8').trim().split('\n')) {
                const [k, v] = line.split(' ');
                rep[k] = Number(v);
            }
            return rep;
        }
        await sleep(10);
    }
    console.error('bullmq_compare: worker produced no report; its log:');
    console.error(fs.readFileSync(path.join(w.dir, 'log'), 'utf8'));
    return null;
}

async function stopWorker(w) {
    if (!w.exited()) {
        w.child.kill('SIGTERM');
        const deadline = mono() + 10;
        while (!w.exited() && mono() < deadline)
            await sleep(10);
        if (!w.exited())
            w.child.kill('SIGKILL');
    }
    fs.rmSync(w.dir, { recursive: true, force: true });
}

async function main() {
    const connection = { path: sock };
    const ctl = new IORedis(connection);
    const queue = new Queue(QUEUE, { connection });
    let ok = true;
    await ctl.flushall();

    if (mode === 'push') {
        const nsingle = num(4), nbulk = num(5);
        const warm = Math.floor(nsingle / 20) + 10;
        for (let i = 0; i < warm; i++)
            await queue.add('BenchJob', { i, s: 'bench' }, JOB_OPTS);
        let t0 = mono();
        for (let i = 0; i < nsingle; i++)
            await queue.add('BenchJob', { i, s: 'bench' }, JOB_OPTS);
        const single = nsingle / (mono() - t0);
        let waiting = await queue.getWaitingCount();
        if (waiting !== warm + nsingle)
            throw new Error(`single: ${waiting} jobs waiting, expected ${warm + nsingle}`);

        await ctl.flushall();
        // building the list is the caller's: not timed
        const list = Array.from({ length: nbulk },
                                (_, i) => ({ name: 'BenchJob', data: { i, s: 'bench' }, opts: JOB_OPTS }));
        t0 = mono();
        const jobs = await queue.addBulk(list);
        const bulk = nbulk / (mono() - t0);
        waiting = await queue.getWaitingCount();
        if (waiting !== nbulk || jobs.length !== nbulk)
            throw new Error(`bulk: ${jobs.length} added (${waiting} waiting), expected ${nbulk}`);
        await ctl.flushall();
        console.log(`# bullmq push: ${nsingle} single adds (after ${warm} warm-up), one addBulk of ${nbulk}`);
        result('push.single', single);
        result('push.bulk', bulk);
    } else if (mode === 'throughput') {
        const conc = num(4), n = num(5);
        for (let i = 0; i < n; i += 10000) {
            const chunk = [];
            for (let k = i; k < n && k < i + 10000; k++)
                chunk.push({ name: 'BenchJob', data: { i: k }, opts: JOB_OPTS });
            await queue.addBulk(chunk);
        }
        const w = spawnWorker('incr', conc, n);
        const rep = await waitReport(w);
        // the last INCR is in; let BullMQ move the last jobs out of 'active'
        const deadline = mono() + 10;
        let counts;
        for (;;) {
            counts = await queue.getJobCounts('wait', 'active', 'failed');
            if (!(counts.wait || counts.active) || mono() > deadline)
                break;
            await sleep(10);
        }
        await stopWorker(w);
        const counter = Number(await ctl.get('bench:incr'));
        ok = rep !== null && rep.done === n && counter === n && !counts.wait && !counts.active &&
             !counts.failed;
        const rate = rep ? rep.rate : 0, hwm = rep ? rep.hwm_kb : 0;
        console.log(`# bullmq c=${conc}: ${n} jobs, ${rate.toFixed(0)} jobs/s, peak RSS ${hwm} KiB; ` +
                    `wait ${counts.wait}, active ${counts.active}, failed ${counts.failed}, ` +
                    `bench:incr ${counter}: ${ok ? 'checks ok' : 'CHECK FAILED'}`);
        if (ok) {
            result('thr', rate);
            result('rss', hwm / 1024);
        }
    } else if (mode === 'latency') {
        const conc = num(4), n = num(5), gapUs = num(6);
        const w = spawnWorker('latency', conc, n);
        // idle means the worker is blocked waiting for a job (BullMQ blocks
        // one connection per worker, whatever its concurrency)
        const deadline = mono() + IDLE_WAIT_S;
        while ((await blockedClients(ctl)) < 1 && mono() < deadline)
            await sleep(5);
        if ((await blockedClients(ctl)) < 1)
            console.log(`# bullmq latency: the worker was not blocked after ${IDLE_WAIT_S} s`);
        for (let i = 0; i < n; i++) {
            const t = process.hrtime.bigint().toString();
            await queue.add('BenchJob', { t }, JOB_OPTS);
            await sleep(gapUs / 1000);
        }
        const rep = await waitReport(w);
        await stopWorker(w);
        ok = rep !== null && rep.done === n;
        if (rep)
            console.log(`# bullmq latency c=${conc}: ${n} jobs ${gapUs} us apart: p50 ${rep.p50_us.toFixed(1)} us, ` +
                        `p99 ${rep.p99_us.toFixed(1)} us, max ${rep.max_us.toFixed(1)} us${ok ? '' : ' (CHECK FAILED)'}`);
        if (ok) {
            result('p50', rep.p50_us);
            result('p99', rep.p99_us);
        }
    } else {
        throw new Error('usage: bullmq_compare.js push|throughput|latency SOCK ...');
    }
    await queue.close();
    ctl.disconnect();
    return ok;
}

main().then((ok) => process.exit(ok ? 0 : 1),
            (err) => { console.error('bullmq_compare:', err.message); process.exit(1); });
