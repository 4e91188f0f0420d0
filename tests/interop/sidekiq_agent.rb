# SPDX-License-Identifier: LGPL-3.0-or-later
# The Ruby side of the interop tests: real Sidekiq 6.4 (Debian ruby-sidekiq)
# reading and writing the Redis that a dray test uses.
#
# Usage: ruby sidekiq_agent.rb REDIS_URL COMMAND [PARAMS]
#   PARAMS is a JSON object, or @FILE holding one.
#   $DRAY_SK_NAMESPACE, when set, puts Sidekiq in that redis-namespace.
# Prints exactly one line "DRAY-RESULT <json>" on stdout; everything else
# (Sidekiq's logger, warnings) goes to stderr. Exit 1 with a message on
# failure, 77 when a needed library is missing (the test skips).
require "json"
require "logger"

RESULT_OUT = $stdout
$stdout = $stderr

begin
  require "sidekiq"
  require "sidekiq/api"
rescue LoadError => e
  warn "sidekiq is not installed (#{e.message}); apt-get install ruby-sidekiq"
  exit 1
end

url, command, raw_params = ARGV
abort "usage: sidekiq_agent.rb REDIS_URL COMMAND [PARAMS]" unless url && command
params = if raw_params.nil? then {}
         elsif raw_params.start_with?("@") then JSON.parse(File.read(raw_params[1..]))
         else JSON.parse(raw_params)
         end

redis_cfg = { url: url }
ns = ENV["DRAY_SK_NAMESPACE"]
SK7 = Sidekiq::VERSION.to_i >= 7
if ns && !ns.empty?
  if SK7
    warn "Sidekiq #{Sidekiq::VERSION} has no namespace support (redis-namespace was dropped in 7.0)"
    exit 77
  end
  begin
    require "redis-namespace"
  rescue LoadError => e
    warn "redis-namespace is not installed (#{e.message}); apt-get install ruby-redis-namespace"
    exit 77
  end
  redis_cfg[:namespace] = ns
end
if SK7
  Sidekiq.default_configuration.logger = Logger.new($stderr, level: Logger::WARN)
else
  Sidekiq.logger = Logger.new($stderr, level: Logger::WARN)
end
Sidekiq.configure_client { |c| c.redis = redis_cfg }
Sidekiq.configure_server { |c| c.redis = redis_cfg }

# Worker classes for perform_in/perform_async (dray runs them, not Ruby).
class HardJob
  include Sidekiq::Worker
end

module Billing
  class InvoiceJob
    include Sidekiq::Worker
    sidekiq_options queue: "critical", retry: 3, backtrace: 10
  end
end

def klass_named(name)
  Object.const_get(name)
end

def emit(obj)
  RESULT_OUT.puts("DRAY-RESULT " + JSON.generate(obj))
  RESULT_OUT.flush
end

def time_field(item, name)
  v = item[name]
  { "value" => v, "ruby_class" => v.class.name }
end

# What Ruby's API says about one job (JobRecord or SortedEntry).
def record(j)
  h = {
    "klass" => j.klass,
    "display_class" => j.display_class,
    "args" => j.args,
    "jid" => j.jid,
    "queue" => j.queue,
    "item" => j.item,
    "value" => j.value,
    "created_at" => time_field(j.item, "created_at"),
    "enqueued_at" => time_field(j.item, "enqueued_at"),
    "created_at_time" => j.created_at.to_f,
    "enqueued_at_time" => j.enqueued_at&.to_f,
    "tags" => j.tags,
    "latency" => j.latency,
  }
  if j.is_a?(Sidekiq::SortedEntry)
    h["score"] = j.score
    h["at"] = j.at.to_f
    h["error"] = j.error?
    %w[error_class error_message retry_count failed_at retried_at].each { |k| h[k] = j[k] }
    h["failed_at_class"] = j["failed_at"].class.name
    h["retried_at_class"] = j["retried_at"].class.name
    h["error_backtrace"] = j.error_backtrace
  end
  h
end

# Strict deep equality: same classes (1 != 1.0 here), same values, same key
# order. Returns nil when equal, else a path and both sides.
def strict_diff(a, b, path = "$")
  return "#{path}: #{a.class} #{a.inspect} vs #{b.class} #{b.inspect}" unless a.class == b.class
  case a
  when Hash
    return "#{path}: keys #{a.keys.inspect} vs #{b.keys.inspect}" unless a.keys == b.keys
    a.each_key { |k| (d = strict_diff(a[k], b[k], "#{path}.#{k}")) and return d }
    nil
  when Array
    return "#{path}: length #{a.size} vs #{b.size}" unless a.size == b.size
    a.each_index { |i| (d = strict_diff(a[i], b[i], "#{path}[#{i}]")) and return d }
    nil
  when Float
    # eql? tells -0.0 from 0.0 and compares the exact double
    a.eql?(b) || (a.nan? && b.nan?) ? nil : "#{path}: #{a.inspect} vs #{b.inspect}"
  else
    a == b ? nil : "#{path}: #{a.inspect} vs #{b.inspect}"
  end
end

def find_process(identity)
  Sidekiq::ProcessSet.new.find { |p| p.identity == identity }
end

case command
when "inspect"
  queues = params["queues"] || Sidekiq::Queue.all.map(&:name)
  stats = Sidekiq::Stats.new
  out = {
    "queue_names" => Sidekiq::Queue.all.map(&:name),
    "queues" => queues.to_h { |q| [q, Sidekiq::Queue.new(q).map { |j| record(j) }] },
    "queue_sizes" => queues.to_h { |q| [q, Sidekiq::Queue.new(q).size] },
    "queue_latency" => queues.to_h { |q| [q, Sidekiq::Queue.new(q).latency] },
    "scheduled" => Sidekiq::ScheduledSet.new.map { |j| record(j) },
    "retries" => Sidekiq::RetrySet.new.map { |j| record(j) },
    "dead" => Sidekiq::DeadSet.new.map { |j| record(j) },
    "stats" => {
      "processed" => stats.processed, "failed" => stats.failed, "enqueued" => stats.enqueued,
      "scheduled_size" => stats.scheduled_size, "retry_size" => stats.retry_size,
      "dead_size" => stats.dead_size, "processes_size" => stats.processes_size,
      "workers_size" => stats.workers_size,
    },
  }
  emit(out)

when "processes"
  procs = Sidekiq::ProcessSet.new.map do |p|
    { "identity" => p.identity, "hostname" => p["hostname"], "pid" => p["pid"],
      "concurrency" => p["concurrency"], "queues" => p.queues, "tag" => p.tag,
      "labels" => p.labels, "busy" => p["busy"], "beat" => p["beat"], "quiet" => p["quiet"],
      "stopping" => p.stopping?, "started_at" => p["started_at"],
      "started_at_class" => p["started_at"].class.name, "rss" => p["rss"] }
  end
  works = Sidekiq::Workers.new.map do |process_id, thread_id, work|
    if SK7
      # 7.x: a Sidekiq::Work; the raw fields, the job through JobRecord
      { "process" => process_id, "tid" => thread_id, "queue" => work.queue,
        "run_at" => work.raw("run_at"), "run_at_class" => work.raw("run_at").class.name,
        "run_at_time" => work.run_at.to_f, "payload" => work.job.item,
        "job_class" => work.job.display_class }
    else
      { "process" => process_id, "tid" => thread_id, "queue" => work["queue"],
        "run_at" => work["run_at"], "run_at_class" => work["run_at"].class.name,
        "payload" => work["payload"] }
    end
  end
  stats = Sidekiq::Stats.new
  emit("processes" => procs, "processes_size" => Sidekiq::ProcessSet.new(false).size,
       "workers" => works, "workers_size" => Sidekiq::Workers.new.size,
       "stats_workers_size" => stats.workers_size, "stats_processes_size" => stats.processes_size,
       "total_concurrency" => Sidekiq::ProcessSet.new(false).total_concurrency)

when "stats"
  s = Sidekiq::Stats.new
  h = Sidekiq::Stats::History.new(1)
  emit("processed" => s.processed, "failed" => s.failed, "enqueued" => s.enqueued,
       "scheduled_size" => s.scheduled_size, "retry_size" => s.retry_size,
       "dead_size" => s.dead_size, "processes_size" => s.processes_size,
       "history_processed_today" => h.processed.values.first,
       "history_failed_today" => h.failed.values.first)

when "push"
  # {"jobs": [item, ...]}: Sidekiq::Client.push of each; "class" may name a
  # worker class defined above ("klass" => true) or stay a string.
  jids = params.fetch("jobs").map do |item|
    item = item.dup
    item["class"] = klass_named(item["class"]) if item.delete("use_class")
    Sidekiq::Client.push(item) or raise "push of #{item.inspect} returned nil"
  end
  emit("jids" => jids)

when "push_bulk"
  item = params.fetch("item").dup
  item["class"] = klass_named(item["class"]) if item.delete("use_class")
  emit("jids" => Sidekiq::Client.push_bulk(item))

when "perform_in"
  # {"class": "HardJob", "interval": s, "args": [...], "queue": q?}
  k = klass_named(params.fetch("class"))
  k = k.set(queue: params["queue"]) if params["queue"]
  emit("jid" => k.perform_in(params.fetch("interval"), *params.fetch("args")))

when "perform_at"
  k = klass_named(params.fetch("class"))
  k = k.set(queue: params["queue"]) if params["queue"]
  emit("jid" => k.perform_at(params.fetch("at"), *params.fetch("args")))

when "compare"
  # {"pairs": [[original_json, dray_dump_json], ...]}
  results = params.fetch("pairs").map do |orig, dumped|
    d = strict_diff(Sidekiq.load_json(orig), Sidekiq.load_json(dumped))
    { "equal" => d.nil?, "diff" => d, "bytes_equal" => orig == dumped }
  end
  emit("results" => results)

when "retry_all"
  set = Sidekiq::RetrySet.new
  n = 0
  set.each { |e| e.retry; n += 1 }
  emit("retried" => n, "retry_size" => Sidekiq::RetrySet.new.size)

when "retry_jid", "kill_jid", "delete_jid"
  set = params["set"] == "dead" ? Sidekiq::DeadSet.new : Sidekiq::RetrySet.new
  e = set.find_job(params.fetch("jid")) or abort "#{params["jid"]} not found in #{set.name}"
  case command
  when "retry_jid" then e.retry
  when "kill_jid" then e.kill
  else e.delete
  end
  emit("ok" => true)

when "signal"
  p = find_process(params.fetch("identity")) or abort "process #{params["identity"]} not in ProcessSet"
  case params.fetch("sig")
  when "quiet" then p.quiet!
  when "stop" then p.stop!
  else abort "unknown signal #{params["sig"]}"
  end
  emit("ok" => true)

when "push_bigints"
  # {"class", "queue", "retry", "digits": [...]}: one job whose args are Ruby
  # Integers (bignums beyond 64 bits), as an application pushes them.
  item = { "class" => params.fetch("class"), "queue" => params.fetch("queue"),
           "retry" => params.fetch("retry"),
           "args" => params.fetch("digits").map { |d| Integer(d) } }
  emit("jid" => Sidekiq::Client.push(item))

when "set_args"
  # {"set": "retry" | "dead"}: jid, retry_count and args ([class, digits]) of each entry.
  set = params["set"] == "dead" ? Sidekiq::DeadSet.new : Sidekiq::RetrySet.new
  emit("entries" => set.map { |e|
    { "jid" => e.jid, "retry_count" => e["retry_count"],
      "args" => e.args.map { |a| [a.class.name, a.to_s] } }
  })

when "metrics"
  # Sidekiq 7's execution metrics as its Metrics page reads them:
  # {"classes": [...]} -> top_jobs totals of every class, and for each named
  # class the for_job totals and its histogram summed over the hour, by label.
  begin
    require "sidekiq/metrics/query"
  rescue LoadError => e
    warn "Sidekiq #{Sidekiq::VERSION} has no execution metrics (#{e.message})"
    exit 77
  end
  q = Sidekiq::Metrics::Query.new
  top = q.top_jobs.job_results.to_h { |k, jr| [k, jr.totals.to_h] }
  labels = Sidekiq::Metrics::Histogram::LABELS
  per = params.fetch("classes", []).to_h do |k|
    jr = Sidekiq::Metrics::Query.new.for_job(k).job_results[k]
    hist = Hash.new(0)
    # for_job keeps each minute's buckets reversed (slowest first)
    jr.hist.each_value { |a| a.reverse.each_with_index { |n, i| hist[labels[i]] += n.to_i } }
    [k, { "totals" => jr.totals.to_h, "hist" => hist, "avg_ms" => jr.total_avg("ms") }]
  end
  emit("top_jobs" => top, "for_job" => per)

else
  abort "unknown command #{command}"
end
