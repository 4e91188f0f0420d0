# SPDX-License-Identifier: LGPL-3.0-or-later
# Job classes for a real Sidekiq worker process (6.4.1 or 7.3.9) sharing
# queues with dray in test_interop_fleet:
#   sidekiq -r fleet_jobs.rb -q fleet -q to_ruby   ($DRAY_FLEET_URL: the Redis)
# Each run is recorded in Redis: SADD fleet:ran:ruby <jid>, and
# SADD fleet:ran:ruby:<Class> <jid>.
require "sidekiq"
url = ENV.fetch("DRAY_FLEET_URL")
Sidekiq.configure_server { |c| c.redis = { url: url } }
Sidekiq.configure_client { |c| c.redis = { url: url } }

module FleetRecord
  def record
    Sidekiq.redis do |c|
      c.sadd("fleet:ran:ruby", jid)
      c.sadd("fleet:ran:ruby:#{self.class.name}", jid)
    end
  end
end

class FleetJob
  include Sidekiq::Worker
  include FleetRecord
  def perform(*_args)
    record
  end
end

# Fails in dray; retried here it succeeds.
class DrayFails
  include Sidekiq::Worker
  include FleetRecord
  def perform(*_args)
    record
  end
end

# Fails here (its retry goes to to_dray after 1 s); dray runs it then.
class RubyFails
  include Sidekiq::Worker
  include FleetRecord
  sidekiq_options retry: 3, retry_queue: "to_dray"
  sidekiq_retry_in { |_count, _exc| 1 }
  def perform(*_args)
    record
    raise ArgumentError, "failed in Ruby on purpose"
  end
end
