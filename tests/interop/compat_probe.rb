# SPDX-License-Identifier: LGPL-3.0-or-later
# What real Sidekiq (Debian's 6.4.1, or 7.3.9 with RUBYLIB from
# sidekiq7.env) reads from dray's records: ProcessSet's version and info
# fields, RetrySet/DeadSet's decoded error_backtrace and times.
# Usage: ruby compat_probe.rb REDIS_URL
# Prints one line "DRAY-RESULT <json>" on stdout; exit 1 on failure.
require "json"
require "logger"

out = $stdout
$stdout = $stderr
require "sidekiq"
require "sidekiq/api"

Sidekiq.configure_client { |c| c.redis = { url: ARGV.fetch(0) } }

def entry(e)
  { "jid" => e.jid, "class" => e.klass, "error_backtrace" => e.error_backtrace,
    "failed_at" => e["failed_at"], "score" => e.score }
end

procs = Sidekiq::ProcessSet.new.map do |p|
  { "identity" => p.identity, "version" => p["version"],
    "version_method" => (p.respond_to?(:version) ? p.version : nil),
    "embedded" => p["embedded"], "weights" => p["weights"], "capsules" => p["capsules"],
    "queues" => p.queues, "concurrency" => p["concurrency"] }
end
result = {
  "sidekiq" => Sidekiq::VERSION,
  "processes" => procs,
  "retries" => Sidekiq::RetrySet.new.map { |e| entry(e) },
  "dead" => Sidekiq::DeadSet.new.map { |e| entry(e) },
}
out.puts("DRAY-RESULT " + JSON.generate(result))
out.flush
