// Store jobs the unit tests share.
#pragma once
#include "iotgate/store.h"

namespace iotgate::test {

// A durable write the writer holds while Redis is away: a device's logout time.
inline StoreJob held_logout_time() {
  StoreJob job;
  job.type = StoreJob::Type::touch_device;
  job.durable = true;
  job.touch = Touch{.product = "P1", .device = "D1", .last_offline = 1700000000};
  return job;
}

}  // namespace iotgate::test
