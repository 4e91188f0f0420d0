# SPDX-License-Identifier: LGPL-3.0-or-later
# Sidekiq's driver for bench/compare/run, the counterpart of dray_compare.c:
#
#   ruby sidekiq_compare.rb push SOCK NSINGLE NBULK
#   ruby sidekiq_compare.rb throughput SOCK CONC N
#   ruby sidekiq_compare.rb latency SOCK CONC N GAP_US
#
# The producer side uses Sidekiq::Client (push, push_bulk); the worker is the
# `sidekiq` executable booting sidekiq_worker.rb, in its own process so its
# peak RSS is the worker's alone. Output: "RESULT<TAB>metric<TAB>value" lines
# and "# " prose; exit status 1 when a run fails its checks. Every mode starts
# with FLUSHALL.
require "sidekiq"
require "fileutils"
require "tmpdir"

HERE = File.expand_path(__dir__)
QUEUE_KEY = "queue:default"
COUNTER_KEY = "bench:incr"
WORKER_TIMEOUT_S = 600 # a run that takes longer than this has failed
IDLE_WAIT_S = 20

mode, sock = ARGV[0], ARGV[1]
abort "usage: sidekiq_compare.rb push|throughput|latency SOCK ..." unless mode && sock

Sidekiq.configure_client { |config| config.redis = { path: sock } }
# redis-rb 4.8 prints a deprecation warning for every SADD Sidekiq 6.4's
# client sends (one stderr line per push); silence it, as an app would.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
Sidekiq.logger.level = Logger::WARN

def mono
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

def result(metric, value)
  puts "RESULT\t#{metric}\t#{value}"
  $stdout.flush
end

def redis(&block)
  Sidekiq.redis(&block)
end

def blocked_clients
  redis { |c| c.info("clients")["blocked_clients"].to_i }
end

# Start `sidekiq` with the boot file; returns [pid, out_path, dir].
def spawn_worker(sock, mode, conc, n)
  dir = Dir.mktmpdir("dray-compare-sidekiq")
  out = File.join(dir, "out")
  env = { "BENCH_SOCK" => sock, "BENCH_MODE" => mode, "BENCH_N" => n.to_s, "BENCH_OUT" => out }
  pid = Process.spawn(env, "sidekiq", "-r", File.join(HERE, "sidekiq_worker.rb"),
                      "-c", conc.to_s, "-q", "default", "-t", "5",
                      out: File.join(dir, "log"), err: [:child, :out])
  [pid, out, dir]
end

# Wait for the worker's report, stop the worker, return the report (a Hash of
# floats) or nil when it died or timed out.
def collect_worker(pid, out, dir)
  deadline = mono + WORKER_TIMEOUT_S
  report = nil
  loop do
    if File.exist?(out)
      report = File.readlines(out).to_h { |l| k, v = l.split; [k, v.to_f] }
      break
    end
    if Process.waitpid(pid, Process::WNOHANG) # died without a report
      pid = nil
      break
    end
    break if mono > deadline

    sleep 0.01
  end
  if pid
    # every job is done: a graceful stop only waits for the 2 s BRPOP timeout
    Process.kill("TERM", pid)
    deadline = mono + 10
    sleep 0.05 while !Process.waitpid(pid, Process::WNOHANG) && mono < deadline
    if mono >= deadline
      Process.kill("KILL", pid)
      Process.waitpid(pid)
    end
  end
  unless report
    warn "sidekiq_compare: worker produced no report; its log:"
    warn File.read(File.join(dir, "log")) rescue nil
  end
  report
ensure
  FileUtils.rm_rf(dir)
end

case mode
when "push"
  nsingle, nbulk = Integer(ARGV[2]), Integer(ARGV[3])
  redis(&:flushall)
  warm = nsingle / 20 + 10
  warm.times { |i| Sidekiq::Client.push("class" => "BenchJob", "args" => [i, "bench"]) }
  t0 = mono
  nsingle.times { |i| Sidekiq::Client.push("class" => "BenchJob", "args" => [i, "bench"]) }
  single = nsingle / (mono - t0)
  llen = redis { |c| c.llen(QUEUE_KEY) }
  abort "sidekiq_compare: single: #{llen} jobs queued, expected #{warm + nsingle}" if llen != warm + nsingle

  redis(&:flushall)
  list = Array.new(nbulk) { |i| [i, "bench"] } # building the args is the caller's: not timed
  t0 = mono
  jids = Sidekiq::Client.push_bulk("class" => "BenchJob", "args" => list)
  bulk = nbulk / (mono - t0)
  llen = redis { |c| c.llen(QUEUE_KEY) }
  abort "sidekiq_compare: bulk: #{jids.size} pushed (queue #{llen}), expected #{nbulk}" if llen != nbulk || jids.size != nbulk

  redis(&:flushall)
  puts "# sidekiq push: #{nsingle} single pushes (after #{warm} warm-up), one push_bulk of #{nbulk}"
  result("push.single", single)
  result("push.bulk", bulk)

when "throughput"
  conc, n = Integer(ARGV[2]), Integer(ARGV[3])
  redis(&:flushall)
  (0...n).each_slice(10_000) { |s| Sidekiq::Client.push_bulk("class" => "BenchJob", "args" => s.map { |i| [i] }) }
  pid, out, dir = spawn_worker(sock, "incr", conc, n)
  rep = collect_worker(pid, out, dir)
  left = redis { |c| c.llen(QUEUE_KEY) }
  counter = redis { |c| c.get(COUNTER_KEY) }.to_i
  ok = rep && rep["done"].to_i == n && left.zero? && counter == n
  rate = rep ? rep["rate"] : 0
  hwm = rep ? rep["hwm_kb"] : 0
  puts format("# sidekiq c=%d: %d jobs, %.0f jobs/s, peak RSS %.0f KiB; queue left %d, %s %d: %s",
              conc, n, rate, hwm, left, COUNTER_KEY, counter, ok ? "checks ok" : "CHECK FAILED")
  exit 1 unless ok

  result("thr", rate)
  result("rss", hwm / 1024.0)

when "latency"
  conc, n, gap_us = Integer(ARGV[2]), Integer(ARGV[3]), Integer(ARGV[4])
  redis(&:flushall)
  pid, out, dir = spawn_worker(sock, "latency", conc, n)
  # idle means every processor is already blocked in BRPOP
  deadline = mono + IDLE_WAIT_S
  sleep 0.005 while blocked_clients < conc && mono < deadline
  puts "# sidekiq latency: only #{blocked_clients} of #{conc} processors blocked after #{IDLE_WAIT_S} s" if blocked_clients < conc
  gap = gap_us / 1e6
  n.times do
    t = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
    Sidekiq::Client.push("class" => "BenchJob", "args" => [t])
    sleep gap
  end
  rep = collect_worker(pid, out, dir)
  ok = rep && rep["done"].to_i == n
  if rep
    puts format("# sidekiq latency c=%d: %d jobs %d us apart: p50 %.1f us, p99 %.1f us, max %.1f us%s",
                conc, n, gap_us, rep["p50_us"], rep["p99_us"], rep["max_us"], ok ? "" : " (CHECK FAILED)")
  end
  exit 1 unless ok

  result("p50", rep["p50_us"])
  result("p99", rep["p99_us"])

else
  abort "usage: sidekiq_compare.rb push|throughput|latency SOCK ..."
end
