// The ACL of device sessions, dispatched by kind to the protocol that owns it.
#include "iotgate/emu/emu.h"
#include "iotgate/identity.h"
#include "iotgate/krt/krt.h"
#include "iotgate/lierda/lierda.h"

namespace iotgate {

const char* to_string(SessionKind kind) {
  switch (kind) {
    case SessionKind::lierda_auth: return "lierda-auth";
    case SessionKind::lierda_v2: return "lierda-v2";
    case SessionKind::krt_register: return "krt-register";
    case SessionKind::krt_device: return "krt-device";
    case SessionKind::emu_gateway: return "emu-gateway";
    case SessionKind::account: return "account";
  }
  return "?";
}

std::optional<Protocol> protocol_of(SessionKind kind) {
  switch (kind) {
    case SessionKind::lierda_auth:
    case SessionKind::lierda_v2: return Protocol::lierda;
    case SessionKind::krt_register:
    case SessionKind::krt_device: return Protocol::krt;
    case SessionKind::emu_gateway: return Protocol::emu;
    case SessionKind::account: break;
  }
  return std::nullopt;
}

bool device_session_allows(SessionKind kind, std::string_view prefix, Access access, TopicText topic,
                           std::string_view* suffix) {
  if (access == Access::unsubscribe) return true;
  switch (kind) {
    case SessionKind::lierda_auth:
    case SessionKind::lierda_v2: return lierda_session_allows(kind, prefix, access, topic, suffix);
    case SessionKind::krt_register:
    case SessionKind::krt_device: return krt_session_allows(kind, prefix, access, topic, suffix);
    case SessionKind::emu_gateway: return emu_session_allows(prefix, access, topic, suffix);
    case SessionKind::account: break;
  }
  return false;
}

}  // namespace iotgate
