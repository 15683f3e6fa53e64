// SPDX-License-Identifier: Apache-2.0
#pragma once

// The broker's metrics as Prometheus text (rendered on the event loop's
// thread from the core's counters, gauges and connections; served by the
// server's HTTP thread from the last rendering).

#include <string>

#include "core.hpp"

namespace plexus::broker {

[[nodiscard]] std::string prometheus_metrics(const core& b);

} // namespace plexus::broker
