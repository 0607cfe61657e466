// The store process's metrics server (StoreProcess::MetricsServer): GET /metrics on `at`, on threads of its own.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "iotgate/sentinel.h"

namespace iotgate {

// Listens on `at` and serves page() at /metrics; returns why it cannot listen, or nullopt.
std::optional<std::string> serve_metrics(const HostPort& at, std::function<std::string()> page);

}  // namespace iotgate
