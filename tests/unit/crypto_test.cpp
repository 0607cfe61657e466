#include <gtest/gtest.h>

#include "iotgate/crypto.h"
#include "iotgate/lierda/lierda.h"

using namespace iotgate;

namespace {
constexpr const char* kPid = "AA30C505";
constexpr const char* kEui = "20MQTTJ000121";
constexpr const char* kProductKey = "DB6FACEF35BEBA0517712F0E4BE32936";
constexpr const char* kSecret = "326086233FAB8A96566796551EB1DFF8";
}  // namespace

// Seed 001 section 2.2.5, type 0 (golden).
TEST(LierdaPassword, SeedVectorType0) {
  EXPECT_EQ(lierda_v2_password(kSecret, kPid, kEui, kProductKey, std::nullopt).value(),
            "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F0587668"
            "0DBB4A7CB546B1EE27FF10134B");
}

// Seed 001 section 2.2.5, type 1 (golden).
TEST(LierdaPassword, SeedVectorType1) {
  EXPECT_EQ(lierda_v2_password(kSecret, kPid, kEui, kProductKey, 1675404867).value(),
            "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F0725CDE"
            "013D77D74F22A59C33F8FE51622BE8CFAD9396E7811545F61CEDA9E4F9");
}

TEST(LierdaPassword, RejectsMalformedSecret) {
  EXPECT_FALSE(lierda_v2_password("326086233FAB8A96", kPid, kEui, kProductKey, std::nullopt));
  EXPECT_FALSE(lierda_v2_password("ZZ6086233FAB8A96566796551EB1DFF8", kPid, kEui, kProductKey, std::nullopt));
  EXPECT_FALSE(lierda_v2_password("", kPid, kEui, kProductKey, std::nullopt));
}

TEST(LierdaPassword, DependsOnEveryInput) {
  auto base = lierda_v2_password(kSecret, kPid, kEui, kProductKey, 100).value();
  EXPECT_NE(base, lierda_v2_password(kSecret, kPid, kEui, kProductKey, 101).value());
  EXPECT_NE(base, lierda_v2_password(kSecret, kPid, "20MQTTJ000122", kProductKey, 100).value());
  EXPECT_NE(base, lierda_v2_password(kSecret, "AA30C506", kEui, kProductKey, 100).value());
  EXPECT_NE(base, lierda_v2_password("426086233FAB8A96566796551EB1DFF8", kPid, kEui, kProductKey, 100).value());
}

// PROTOCOL-NOTES decision 1 (golden).
TEST(LierdaSessionKey, NotesVectors) {
  EXPECT_EQ(lierda_session_key(kProductKey, "4655434B", 128).value(), "3F81A97DDA9B30089BB31CE21826E745");
  EXPECT_EQ(lierda_session_key(kProductKey, "3788433", 4).value(), "E9FD1F6A5003A3807A081BC1416F6413");
  EXPECT_FALSE(lierda_session_key("1234", "3788433", 4));
}

// protocol notes: the uplink example encrypted under a SessionKey (the seed's own sample is truncated).
TEST(Aes, UplinkVectorAndRoundTrip) {
  Bytes key = from_hex("A9AB8E82D2D4A60E67C99D3A446D6088").value();
  std::string plain = R"({"deviceId":"10000001","power":99})";
  Bytes cipher = aes128_ecb_encrypt(key, plain);
  EXPECT_EQ(to_hex_upper(cipher),
            "CB96395F5065FD121D88B1593EFE44EA9C6A716A807B4AEA693CC0D0C2984B8B8F8D4F2DC41F8B3D973BDC4EC63EF974");
  EXPECT_EQ(aes128_ecb_decrypt(key, cipher).value(), plain);
  Bytes truncated(cipher.begin(), cipher.begin() + 14);
  EXPECT_FALSE(aes128_ecb_decrypt(key, truncated));
  Bytes wrong = from_hex("00AB8E82D2D4A60E67C99D3A446D6088").value();
  EXPECT_NE(aes128_ecb_decrypt(wrong, cipher), std::optional<std::string>(plain));
  // The cipher context is reused per thread: a failed decryption must leave nothing behind for the next call.
  EXPECT_EQ(to_hex_upper(aes128_ecb_encrypt(key, plain)), to_hex_upper(cipher));
  EXPECT_EQ(aes128_ecb_decrypt(key, cipher).value(), plain);
}

TEST(Hex, RoundTripAndRejects) {
  EXPECT_EQ(to_hex_upper(from_hex("00ff10Ab").value()), "00FF10AB");
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
  EXPECT_TRUE(from_hex("")->empty());
}

TEST(Random, HexSecretsAreFreshAndWellFormed) {
  std::string a = random_hex(16), b = random_hex(16);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  for (char c : a) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'));
}

// A hash written by mosquitto_passwd 2.0.11 (golden).
TEST(Pbkdf2, VerifiesMosquittoPasswdHash) {
  auto h = parse_pbkdf2_hash(
      "$7$101$P1hOONOJYF3fE6+D$HKKEKSqUBCkMHJ/RkSA4z9hcjwcUFCKHvyqf97jML4yptOGI8dVSioW3CTajP41hTLujHH7Y80NuKCQBI9lMog==");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->iterations, 101);
  EXPECT_EQ(h->salt.size(), 12u);
  EXPECT_TRUE(verify_pbkdf2(*h, "s3cret-pass"));
  EXPECT_FALSE(verify_pbkdf2(*h, "s3cret-pasS"));
  EXPECT_FALSE(verify_pbkdf2(*h, ""));
}

TEST(Pbkdf2, MakeThenVerify) {
  auto h = parse_pbkdf2_hash(make_pbkdf2_hash("hello", 50));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->iterations, 50);
  EXPECT_TRUE(verify_pbkdf2(*h, "hello"));
  EXPECT_FALSE(verify_pbkdf2(*h, "hellO"));
}

TEST(Pbkdf2, RejectsMalformedHashes) {
  for (const char* bad : {"", "$6$101$abc$def", "$7$$P1hOONOJYF3fE6+D$HKKE", "$7$x$P1hOONOJYF3fE6+D$HKKE",
                          "$7$101$P1hOONOJYF3fE6+D", "$7$101$!!!!$HKKEKSqU", "$7$0$P1hOONOJYF3fE6+D$HKKEKSqU",
                          "$7$101$P1hOONOJYF3fE6+D$c2hvcnQ=", "$7$101$P1hOONOJYF3fE6+D$HKKE$extra"})
    EXPECT_FALSE(parse_pbkdf2_hash(bad)) << bad;
}

TEST(ConstantTimeEqual, Basics) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_TRUE(constant_time_equal("", ""));
}
