# SPDX-License-Identifier: LGPL-3.0-or-later
# Boot file for the Sidekiq worker of bench/compare (run by sidekiq_compare.rb as
# `sidekiq -r THIS_FILE -c CONC -q default`). It defines BenchJob the way the
# dray worker of bench/bench_server.c does its job:
#
#   BENCH_MODE=incr     each job does one INCR bench:incr (through Sidekiq's own
#                       connection pool); the job whose INCR returns N records
#                       the end, and the rate is N / (last finish - first start)
#   BENCH_MODE=latency  args[0] is the push time (CLOCK_MONOTONIC, ns); each job
#                       records start - push; after N jobs p50/p99 are written
#
# When done it writes "key value" lines to BENCH_OUT (through a rename, so the
# driver never reads half a file): rate or p50_us/p99_us, and hwm_kb (VmHWM).
# Per-job logging is off: Sidekiq's job logger prints its start/done lines at
# INFO, and the level is WARN.
require "sidekiq"

module BenchCompare
  SOCK = ENV.fetch("BENCH_SOCK")
  MODE = ENV.fetch("BENCH_MODE")
  N = Integer(ENV.fetch("BENCH_N"))
  OUT = ENV.fetch("BENCH_OUT")
  LOCK = Mutex.new
  @t_first = nil
  @lat = []

  def self.mono
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def self.mono_ns
    Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
  end

  def self.first(t)
    LOCK.synchronize { @t_first ||= t }
  end

  def self.t_first
    LOCK.synchronize { @t_first }
  end

  # Returns the latencies once the N-th sample is in, else nil.
  def self.sample(us)
    LOCK.synchronize do
      @lat << us
      @lat.size == N ? @lat.dup : nil
    end
  end

  def self.hwm_kb
    File.foreach("/proc/self/status") { |l| return l.split[1].to_i if l.start_with?("VmHWM:") }
    -1
  end

  # Nearest rank, as bench_percentile in bench/bench_common.c.
  def self.percentile(sorted, q)
    rank = (q * sorted.size).ceil
    rank = 1 if rank < 1
    rank = sorted.size if rank > sorted.size
    sorted[rank - 1]
  end

  def self.report(fields)
    fields["hwm_kb"] = hwm_kb
    tmp = "#{OUT}.tmp"
    File.write(tmp, fields.map { |k, v| "#{k} #{v}\n" }.join)
    File.rename(tmp, OUT)
  end
end

Sidekiq.configure_server { |config| config.redis = { path: BenchCompare::SOCK } }
Sidekiq.configure_client { |config| config.redis = { path: BenchCompare::SOCK } }
Sidekiq.logger.level = Logger::WARN
# redis-rb 4.8 prints a deprecation warning for every SADD Sidekiq 6.4's
# client sends (one stderr line per push); silence it, as an app would.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

class BenchJob
  include Sidekiq::Worker

  def perform(*args)
    if BenchCompare::MODE == "latency"
      us = (BenchCompare.mono_ns - args[0]) / 1000.0
      lat = BenchCompare.sample(us)
      return unless lat

      lat.sort!
      BenchCompare.report("done" => lat.size,
                          "p50_us" => BenchCompare.percentile(lat, 0.50),
                          "p99_us" => BenchCompare.percentile(lat, 0.99),
                          "max_us" => lat[-1])
    else
      BenchCompare.first(BenchCompare.mono)
      v = Sidekiq.redis { |conn| conn.incr("bench:incr") }
      return unless v == BenchCompare::N

      t_last = BenchCompare.mono
      BenchCompare.report("done" => v, "rate" => BenchCompare::N / (t_last - BenchCompare.t_first))
    end
  end
end
