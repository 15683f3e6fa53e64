// SPDX-License-Identifier: Apache-2.0
// Zipkin v2 export over HTTP: POST the JSON of zipkin_json to a collector.
#include "plexus/trace.hpp"

#include <httplib.h>

namespace plexus {

std::optional<std::string> post_zipkin(std::string_view url, std::string_view json,
                                       std::chrono::milliseconds timeout) {
  // scheme://host[:port]/path: httplib's client takes the first part.
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || (url.substr(0, scheme_end) != "http" &&
                                               url.substr(0, scheme_end) != "https"))
    return "not an http:// or https:// URL: " + std::string{url};
  auto path_at = url.find('/', scheme_end + 3);
  auto origin = std::string{url.substr(0, path_at)};
  auto path = path_at == std::string_view::npos ? std::string{"/"} : std::string{url.substr(path_at)};
  if (origin.size() == scheme_end + 3) return "no host in " + std::string{url};
  httplib::Client http{origin};
  auto seconds = static_cast<time_t>(timeout.count() / 1000);
  auto micros = static_cast<time_t>((timeout.count() % 1000) * 1000);
  http.set_connection_timeout(seconds, micros);
  http.set_read_timeout(seconds, micros);
  http.set_write_timeout(seconds, micros);
  auto res = http.Post(path, json.data(), json.size(), "application/json");
  if (!res) {
    auto why = res.error() == httplib::Error::Connection
                 ? std::string{"cannot connect (is a collector listening there?)"}
                 : "HTTP client error: " + httplib::to_string(res.error());
    return "cannot POST to " + std::string{url} + ": " + why;
  }
  if (res->status < 200 || res->status > 299) {
    auto body = res->body.substr(0, 200);
    return std::string{url} + " answered " + std::to_string(res->status) +
           (body.empty() ? "" : ": " + body);
  }
  return std::nullopt;
}

} // namespace plexus
