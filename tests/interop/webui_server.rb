# SPDX-License-Identifier: LGPL-3.0-or-later
# Sidekiq 7.3.9's Web UI (shared/peers, through $RUBYLIB from sidekiq7.env)
# served by Debian's Rack + WEBrick on 127.0.0.1, for the browser test.
#   ruby webui_server.rb REDIS_URL PORT_FILE
# Writes the port it listens on to PORT_FILE, then serves until killed.
# Exit 77 when a library is missing (the test reports Skipped).
url, port_file = ARGV
abort "usage: webui_server.rb REDIS_URL PORT_FILE" unless url && port_file
begin
  require "securerandom"
  require "rack"
  require "rack/session/cookie"
  require "webrick"
  require "rack/handler/webrick"
  require "sidekiq"
  require "sidekiq/web"
rescue LoadError => e
  warn "cannot load the Web UI's libraries (#{e.message}); apt-get install ruby-rack ruby-webrick"
  exit 77
end
Sidekiq.configure_client { |c| c.redis = { url: url } }
app = Rack::Builder.new do
  use Rack::Session::Cookie, secret: SecureRandom.hex(32), same_site: true, max_age: 86400
  run Sidekiq::Web
end
log = WEBrick::Log.new($stderr, WEBrick::Log::WARN)
Rack::Handler::WEBrick.run(app, Host: "127.0.0.1", Port: 0, Logger: log, AccessLog: []) do |server|
  File.write(port_file + ".tmp", server.config[:Port].to_s)
  File.rename(port_file + ".tmp", port_file)
end
